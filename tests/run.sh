#!/usr/bin/env bash
# The whole test suite, as CI runs it (README: "Run the tests"):
#  1. a warnings-as-errors build (CUDA kernels compiled when nvcc is found) and ctest;
#  2. an address+undefined sanitizer build (gcc) and ctest;
#  3. a ThreadSanitizer build (clang) and the tests of everything that runs
#     threads: the daemon (loop, planner pool, metrics thread), comm (client,
#     worker library), the workers and the solver layer (ctest labels daemon,
#     worker, worker_daemon, threads); tests/tsan.supp names the
#     uninstrumented libraries (libzmq and what it loads) whose internal
#     handoffs TSan cannot see;
#  4. every libFuzzer target for a bounded time (clang; fuzzer, address,
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

echo "== 1/4 build (-Werror) and ctest"
cmake -S . -B build-ci -DSLUICE_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build-ci -j"$jobs"
ctest --test-dir build-ci --output-on-failure -j"$jobs"
stage_done "1/4 build and ctest"

echo "== 2/4 sanitizers (address,undefined) and ctest"
cmake -S . -B build-asan -DSLUICE_WERROR=ON -DSLUICE_CUDA=OFF -DCMAKE_BUILD_TYPE=Debug \
	-DSLUICE_SANITIZE=address,undefined
cmake --build build-asan -j"$jobs"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	ctest --test-dir build-asan --output-on-failure -j"$jobs"
stage_done "2/4 sanitizers"

echo "== 3/4 ThreadSanitizer (clang) and the threaded parts' tests"
CC=clang cmake -S . -B build-tsan -DSLUICE_WERROR=ON -DSLUICE_CUDA=OFF -DCMAKE_BUILD_TYPE=Debug \
	-DSLUICE_SANITIZE=thread
cmake --build build-tsan -j"$jobs"
TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp" \
	ctest --test-dir build-tsan --output-on-failure -j"$jobs" -L 'daemon|worker|worker_daemon|threads'
stage_done "3/4 thread sanitizer"

if [ -x tests/fuzz/run.sh ]; then
	echo "== 4/4 fuzzing (${FUZZ_SECONDS:-20} s per target)"
	tests/fuzz/run.sh "${FUZZ_SECONDS:-20}"
	stage_done "4/4 fuzzing"
fi
echo "== all tests passed in $((SECONDS - t0)) s"
