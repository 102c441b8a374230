#!/usr/bin/env bash
# The whole test suite, as CI runs it (README: "Run the tests"):
#  1. a warnings-as-errors build (CUDA kernels compiled when nvcc is found) and ctest;
#  2. an address+undefined sanitizer build (gcc) and ctest;
#  3. every libFuzzer target for a bounded time (clang; fuzzer, address,
#     undefined and float-cast-overflow), when tests/fuzz/run.sh exists.
# Environment: JOBS (default nproc), FUZZ_SECONDS (default 20 per target).
# Each stage prints its wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}
t0=$SECONDS
stage_start=$SECONDS
stage_done() {
	echo "== $1 took $((SECONDS - stage_start)) s"
	stage_start=$SECONDS
}

echo "== 1/3 build (-Werror) and ctest"
cmake -S . -B build-ci -DSLUICE_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build-ci -j"$jobs"
ctest --test-dir build-ci --output-on-failure -j"$jobs"
stage_done "1/3 build and ctest"

echo "== 2/3 sanitizers (address,undefined) and ctest"
cmake -S . -B build-asan -DSLUICE_WERROR=ON -DSLUICE_CUDA=OFF -DCMAKE_BUILD_TYPE=Debug \
	-DSLUICE_SANITIZE=address,undefined
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ctest --test-dir build-asan --output-on-failure -j"$jobs"
stage_done "2/3 sanitizers"

if [ -x tests/fuzz/run.sh ]; then
	echo "== 3/3 fuzzing (${FUZZ_SECONDS:-20} s per target)"
	tests/fuzz/run.sh "${FUZZ_SECONDS:-20}"
	stage_done "3/3 fuzzing"
fi
echo "== all tests passed in $((SECONDS - t0)) s"
