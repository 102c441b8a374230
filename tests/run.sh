#!/usr/bin/env bash
# The whole test suite, as CI runs it (README: "Run the tests"):
#  1. a warnings-as-errors build (CUDA kernels compiled when nvcc is found) and ctest;
#  2. an address+undefined sanitizer build and ctest;
#  3. every libFuzzer target for a bounded time (clang), when tests/fuzz/run.sh exists.
# Environment: JOBS (default nproc), FUZZ_SECONDS (default 20 per target).
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-$(nproc)}

echo "== 1/3 build (-Werror) and ctest"
cmake -S . -B build-ci -DSLUICE_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build-ci -j"$jobs"
ctest --test-dir build-ci --output-on-failure -j"$jobs"

echo "== 2/3 sanitizers (address,undefined) and ctest"
cmake -S . -B build-asan -DSLUICE_WERROR=ON -DSLUICE_CUDA=OFF -DCMAKE_BUILD_TYPE=Debug \
	-DSLUICE_SANITIZE=address,undefined
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ctest --test-dir build-asan --output-on-failure -j"$jobs"

if [ -x tests/fuzz/run.sh ]; then
	echo "== 3/3 fuzzing (${FUZZ_SECONDS:-20} s per target)"
	tests/fuzz/run.sh "${FUZZ_SECONDS:-20}"
fi
echo "== all tests passed"
