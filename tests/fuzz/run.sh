#!/bin/sh
# Builds every libFuzzer target with clang (SLUICE_FUZZ=ON) and runs each
# for a bounded time. Exit status is non-zero when a target crashes, finds a
# sanitizer error or a leak; the reproducer is left in BUILD/fuzz-artifacts.
#
#   tests/fuzz/run.sh [SECONDS_PER_TARGET [BUILD_DIR [TARGET...]]]
#
# Defaults: 30 seconds, build-fuzz under the repository root, every target
# named fuzz_* that the build defines. Seeds come from tests/fuzz/corpus/T/
# and from PART/fuzz_corpus/ for a target fuzz_PART; new inputs go to
# BUILD/fuzz-corpus/T (kept between runs).
set -eu

secs=${1:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${2:-$root/build-fuzz}
[ $# -ge 2 ] && shift 2 || shift $#
jobs=${SLUICE_FUZZ_JOBS:-2}

cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DSLUICE_FUZZ=ON -DSLUICE_CUDA=OFF \
	-DCMAKE_BUILD_TYPE=RelWithDebInfo >"$build.cmake.log" 2>&1 || {
	cat "$build.cmake.log"
	exit 1
}

if [ $# -gt 0 ]; then
	targets="$*"
else
	targets=$(cmake --build "$build" --target help | grep -oE 'fuzz_[A-Za-z0-9_]+' | sort -u)
fi
[ -n "$targets" ] || { echo "run.sh: no fuzz targets defined" >&2; exit 1; }

cmake --build "$build" -j"$jobs" --target $targets

mkdir -p "$build/fuzz-artifacts"
status=0
for t in $targets; do
	exe=$(find "$build" -type f -name "$t" -perm -u+x | head -n 1)
	if [ -z "$exe" ]; then
		echo "run.sh: $t was not built" >&2
		status=1
		continue
	fi
	work="$build/fuzz-corpus/$t"
	mkdir -p "$work"
	seeds=""
	for d in "$root/tests/fuzz/corpus/$t" "$root/${t#fuzz_}/fuzz_corpus"; do
		[ -d "$d" ] && seeds="$seeds $d"
	done
	echo "== $t: $secs s (seeds:${seeds:- none})"
	# shellcheck disable=SC2086 # seeds is a list of directories
	if ! "$exe" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$build/fuzz-artifacts/$t-" "$work" $seeds; then
		echo "run.sh: $t FAILED (see $build/fuzz-artifacts)" >&2
		status=1
	fi
done
exit $status
