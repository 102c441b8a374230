#!/usr/bin/env bash
# sluice GPU checks and benchmarks in ONE device call (docs/gpu.md has the
# numbers). Builds nothing on the GPU machine: it runs binaries built
# elsewhere (the GPU machine lacks ZeroMQ, GLPK, protobuf-c and jansson; their
# Debian runtime packages come along in .debs/ and are unpacked under /tmp).
#
# usage: bench/gpu/run.sh [STAGE...]     stages, in this order by default:
#   check   gpu_host, gpu_kernel (every kernel variant vs the fp64 reference),
#           gpu_ring 1/2/4 (the worker backend over NCCL), and
#           `sluice run-plan --backend cuda --check` of a small batch (sluice
#           and static plans, 2 and 4 ranks: tests/gpu/run_plan.sh)
#   kernel  per-hop kernel TFLOP/s, every variant (gpu_bench kernel)
#   sdpa    PyTorch SDPA (flash and cuDNN backends) on the same shapes
#   ring    ring forward/backward on groups of 1, 2, 4 ranks, same sequence
#   plans   the sluice and static plans of bench/gpu/batch4.txt on 4 ranks,
#           executed by sluice-worker with the cuda backend, side by side
#   profile Nsight Compute sections of the default D=128 kernels (into kernel.log)
# env: BIN  folder with sluice, sluice-worker, gpu_host, gpu_kernel, gpu_ring,
#           gpu_bench (default .gpubin, else build-cuda's places)
#      OUT  log folder (default ./gpu-out); at most 8 files are written
#      SLUICE_KERN_PATH=mma  the sm_90a kernels off (mma.sync everywhere)
#      QUICK=1 smaller kernel/ring sizes (or KTOK / RTOK: lists of token counts);
#      STEP_TIMEOUT seconds per command (240)
set -u
cd "$(dirname "$0")/../.."
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export PYTHONUNBUFFERED=1
export SLUICE_KERN_TIMEOUT_S=${SLUICE_KERN_TIMEOUT_S:-90} # a stuck ring aborts, not the call
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
QUICK=${QUICK:-0}
stages=${*:-check kernel sdpa ring plans}

if [ -z "${BIN:-}" ]; then
	if [ -d .gpubin ]; then BIN=$PWD/.gpubin; else BIN=$PWD/build-cuda/bin-gpu; fi
fi
if [ ! -x "$BIN/gpu_kernel" ] && [ -d build-cuda ]; then
	mkdir -p build-cuda/bin-gpu
	cp build-cuda/cli/sluice build-cuda/worker/sluice-worker build-cuda/tests/gpu/gpu_* \
		build-cuda/bin-gpu/ 2>/dev/null
	BIN=$PWD/build-cuda/bin-gpu
fi
if [ -d .debs ]; then
	mkdir -p /tmp/deb
	for f in .debs/*.deb; do dpkg -x "$f" /tmp/deb; done
	export LD_LIBRARY_PATH=/tmp/deb/usr/lib/x86_64-linux-gnu:/tmp/deb/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
fi
export SLUICE_WORKER=$BIN/sluice-worker

ngpu=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
{
	nvidia-smi --query-gpu=index,name,memory.total,driver_version,clocks.max.sm --format=csv
	nvidia-smi topo -m 2>/dev/null | head -8
	echo "stages: $stages; QUICK=$QUICK; $(date -u +%FT%TZ)"
} >"$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)

# runs a command, logging to $OUT/$1.log, echoing a one-line status
step() {
	local log=$1
	shift
	echo "### $*" >>"$OUT/$log.log"
	local t0=$SECONDS
	timeout -k 5 "${STEP_TIMEOUT:-240}" "$@" >>"$OUT/$log.log" 2>&1
	local rc=$?
	echo "### rc=$rc ($((SECONDS - t0)) s)" >>"$OUT/$log.log"
	printf '%-6s rc=%-3s %4ss  %s\n' "$log" "$rc" "$((SECONDS - t0))" "$*"
	return $rc
}

if [ "$QUICK" = 1 ]; then
	ktok="16384"
	rtok="32768"
else
	ktok="8192 16384 32768 65536"
	rtok="32768 131072"
fi
ktok=${KTOK:-$ktok} # kernel/sdpa sequence lengths
rtok=${RTOK:-$rtok} # ring sequence lengths

for st in $stages; do
	case $st in
	check)
		step check "$BIN/gpu_host"
		# a failing sm_90a kernel can end the process's CUDA context (a trapped
		# wait): then the mma.sync kernels are checked again on their own
		step check "$BIN/gpu_kernel" ||
			SLUICE_KERN_PATH=mma step check "$BIN/gpu_kernel"
		for n in 1 2 4; do
			[ "$ngpu" -ge $n ] && step check "$BIN/gpu_ring" $n 128
		done
		[ "$ngpu" -ge 2 ] && step check "$BIN/gpu_ring" 2 64
		for n in 2 4; do
			[ "$ngpu" -ge $n ] || continue
			for pol in sluice static; do
				step check tests/gpu/run_plan.sh "$BIN/sluice" "$BIN/sluice-worker" $n $pol \
					bench/gpu/batch4-check.txt bench/gpu/attn-check.json
			done
		done
		;;
	kernel)
		for D in 128 64; do for n in $ktok; do for c in 1 0; do
			step kernel "$BIN/gpu_bench" kernel $D $n $c $((2048 / D)) $((2048 / D)) 5
		done; done; done
		# grouped-query shape of the plans stage
		step kernel "$BIN/gpu_bench" kernel 128 16384 1 16 4 5
		;;
	sdpa)
		specs=""
		for D in 128 64; do for n in $ktok; do for c in 1 0; do specs="$specs $D:$n:$c"; done; done; done
		step sdpa python3 bench/gpu/sdpa.py 5 $specs 128:16384:1:16:4
		;;
	ring)
		if [ "$ngpu" -ge 2 ]; then
			gs="1 2"
			[ "$ngpu" -ge 4 ] && gs="1 2 4"
			for n in $rtok; do
				step ring "$BIN/gpu_bench" ring $([ "$ngpu" -ge 4 ] && echo 4 || echo 2) \
					128 $n 16 4 5 $gs
			done
		fi
		;;
	plans)
		if [ "$ngpu" -ge 4 ]; then
			for pol in sluice static; do
				step plans "$BIN/sluice" plan --ranks 4 --ranks-per-node 4 --policy $pol \
					--profile bench/gpu/attn-d128.json bench/gpu/batch4.txt
				step plans "$BIN/sluice" plan --ranks 4 --ranks-per-node 4 --policy $pol \
					--profile bench/gpu/attn-d128.json --format json \
					-o /tmp/plan-$pol.json bench/gpu/batch4.txt &&
					step plans "$BIN/sluice" run-plan --backend cuda --heads 16 --kv-heads 4 \
						--head-dim 128 --iters 3 --warmup 1 --timeout 300 \
						--profile bench/gpu/attn-d128.json \
						--report /tmp/report-$pol.json /tmp/plan-$pol.json
			done
			python3 - "$OUT/reports.json" /tmp/report-sluice.json /tmp/report-static.json <<'EOF'
import json, sys
out = {}
for p in sys.argv[2:]:
    try:
        out[p.split("report-")[1][:-5]] = json.load(open(p))
    except Exception as e:
        out[p] = str(e)
json.dump(out, open(sys.argv[1], "w"), indent=1)
EOF
		fi
		;;
	profile)
		# Nsight Compute on the mma.sync forward (variant 3), the sm_90a
		# forward and the backward (variant 4) kernels of D = 128 at 16K
		# tokens, 3 launches per variant
		if command -v ncu >/dev/null; then
			step kernel ncu --clock-control none -k regex:fwd_kernel --launch-skip 9 \
				--launch-count 1 --section SpeedOfLight --section WarpStateStats \
				--section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
				"$BIN/gpu_bench" kernel 128 16384 1 16 16 1
			# the sm_90a forward (its first variant, the default on Hopper)
			step kernel ncu --clock-control none -k regex:fwd_sm90_kernel --launch-skip 2 \
				--launch-count 1 --section SpeedOfLight --section WarpStateStats \
				--section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
				"$BIN/gpu_bench" kernel 128 16384 1 16 16 1
			step kernel ncu --clock-control none -k regex:bwd_kernel --launch-skip 12 \
				--launch-count 1 --section SpeedOfLight --section WarpStateStats \
				--section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis \
				"$BIN/gpu_bench" kernel 128 16384 1 16 16 1
		fi
		;;
	*) echo "unknown stage $st" ;;
	esac
done

python3 bench/gpu/summarize.py "$OUT" "$card" | tee "$OUT/summary.md"
