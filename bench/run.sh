#!/bin/sh
# Builds sluice-bench in build-bench/ (Release) and runs it: every registered
# policy replayed over the Wikipedia trace (64 ranks, 8 per node,
# gpt-7b-flexsp, batches of 512, max length 192K), then the sluice planner
# alone at 256, 1024 and 4096 ranks. Extra arguments go to sluice-bench,
# e.g. `bench/run.sh --steps 100 --no-scaling`.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${SLUICE_BENCH_BUILD:-$root/build-bench}
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSLUICE_TESTS=OFF -DSLUICE_CUDA=OFF >/dev/null
cmake --build "$build" --target sluice-bench -j "${JOBS:-2}" >/dev/null
echo "# machine: $(uname -m), $(nproc) CPUs: $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2 | sed 's/^ //')"
echo "# command: bench/run.sh $*"
exec "$build/bench/sluice-bench" "$@"
