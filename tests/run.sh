#!/usr/bin/env bash
# The whole test suite, as CI runs it (README: "Run the tests"):
#  1. a warnings-as-errors build (CUDA kernels compiled when nvcc is found) and ctest;
#  2. an address+undefined sanitizer build (gcc) and ctest;
#  3. a ThreadSanitizer build (clang, CUDA off) and the tests of the threaded
#     parts: ctest labels daemon (sluiced, its planner pool, comm over real
#     sockets), worker and worker_daemon; any TSan report fails the stage;
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

echo "== 3/4 ThreadSanitizer (clang) and the threaded tests"
cmake -S . -B build-tsan -DCMAKE_C_COMPILER=clang -DSLUICE_WERROR=ON -DSLUICE_CUDA=OFF \
	-DCMAKE_BUILD_TYPE=Debug -DSLUICE_SANITIZE=thread
cmake --build build-tsan -j"$jobs"
# halt_on_error: a race fails the test that hit it (sluiced exits 66 and
# its test sees the daemon die); second_deadlock_stack for lock-order reports
TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	ctest --test-dir build-tsan --output-on-failure -j"$jobs" -L 'daemon|worker|worker_daemon'
stage_done "3/4 ThreadSanitizer"

if [ -x tests/fuzz/run.sh ]; then
	echo "== 4/4 fuzzing (${FUZZ_SECONDS:-20} s per target)"
	tests/fuzz/run.sh "${FUZZ_SECONDS:-20}"
	stage_done "4/4 fuzzing"
fi
echo "== all tests passed in $((SECONDS - t0)) s"
