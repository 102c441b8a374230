# Sourced by the bench/gpu scripts on the GPU machine: Debian's runtime
# libraries from .debs/ (the machine lacks ZeroMQ, GLPK, protobuf-c and
# jansson) unpacked under /tmp, cuBLASLt on the loader path, NCCL multicast off.
export NCCL_NVLS_ENABLE=0
# where logs go and where the carried binaries are (scripts cd to the root first)
OUT=${OUT:-$PWD/gpu-out}
BIN=${BIN:-$PWD/.gpubin}
mkdir -p "$OUT"
if [ -d .debs ]; then
	mkdir -p /tmp/deb
	for f in .debs/*.deb; do dpkg -x "$f" /tmp/deb; done
	export LD_LIBRARY_PATH=/tmp/deb/usr/lib/x86_64-linux-gnu:/tmp/deb/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
fi
# cuBLASLt comes with the CUDA toolkit there; find it when the loader does not
if ! ldconfig -p | grep -q libcublasLt.so.13; then
	lt=$(find /usr/local/cuda* /usr/lib /opt -name 'libcublasLt.so.13*' 2>/dev/null | head -1)
	[ -n "$lt" ] && export LD_LIBRARY_PATH=$(dirname "$lt"):$LD_LIBRARY_PATH
fi
