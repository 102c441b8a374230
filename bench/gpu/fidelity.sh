#!/usr/bin/env bash
# Predicted vs measured (docs/fidelity.md) in one device call: plans of every
# policy, made with a profile measured in the same call and with FlexSP's
# gpt-7b constants, on a Wikipedia batch and a long-dominated one at 16 and 64
# ranks, each run by `sluice run-plan --emulate` on this one GPU. Expects
# $OUT/gpt-7b.json from bench/gpu/profile.sh (run first, same call). Writes
# $OUT/runs.tar.gz (plans, reports, tables, two traces) and $OUT/summary.md.
# usage: OUT=DIR [BIN=DIR] [ITERS=1] [WARMUP=1] [BUDGET=s] bash bench/gpu/fidelity.sh
set -u
cd "$(dirname "$0")/../.."
ITERS=${ITERS:-1}
WARMUP=${WARMUP:-1}
. bench/gpu/env.sh
W=/tmp/fidelity
rm -rf "$W"
mkdir -p "$W/runs"
zcat data/traces/wikipedia-flexsp.txt.gz | grep -v '^#' | head -256 >"$W/wiki256.txt"
zcat data/traces/wikipedia-flexsp.txt.gz | grep -v '^#' | head -512 >"$W/wiki512.txt"
grep -v '^#' bench/gpu/long-lognormal.txt | head -16 >"$W/long16.txt"
grep -v '^#' bench/gpu/long-lognormal.txt | head -24 >"$W/long24.txt"
calib=${CALIB:-$OUT/gpt-7b.json}
[ -f "$calib" ] || { echo "fidelity: $calib missing (run bench/gpu/profile.sh first)"; exit 1; }
BUDGET=${BUDGET:-420} # seconds; later runs are skipped past it (the summary still comes)
run() { # ranks batch profile-tag profile policy
	local R=$1 b=$2 tag=$3 prof=$4 pol=$5
	local n=$W/runs/r$R-$b-$tag-$pol
	if [ "$SECONDS" -gt "$BUDGET" ]; then echo "### skipped (time budget): $n"; return; fi
	timeout -k 5 60 "$BIN/sluice" plan --ranks "$R" --profile "$prof" --policy "$pol" \
		--format json -o "$n.plan.json" "$W/$b.txt" || { echo "### plan failed: $n"; return; }
	timeout -k 5 120 "$BIN/sluice" run-plan --emulate --model gpt-7b --profile "$prof" \
		--iters "$ITERS" --warmup "$WARMUP" --report "$n.report.json" \
		$( [ "$pol" = sluice ] && echo --trace-json "$n.trace.json" ) "$n.plan.json" \
		>"$n.table.txt" 2>&1
	echo "### r$R $b $tag $pol rc=$? $(tail -1 "$n.table.txt")"
}
# SPECS: which "ranks batch" pairs run (comma separated), for a call that
# finishes what an earlier one's time budget skipped
IFS=, read -r -a specs <<<"${SPECS:-16 wiki256,16 long16,64 wiki512,64 long24}"
for spec in "${specs[@]}"; do
	set -- $spec
	for tp in "calib $calib" "flexsp gpt-7b-flexsp"; do
		set -- $spec $tp
		for pol in sluice static batch-adaptive megatron-hybrid-cp flexsp; do
			run "$1" "$2" "$3" "$4" "$pol"
		done
	done
done
# repeatability: the same plan once more
if [ -f "$W/runs/r16-wiki256-calib-sluice.plan.json" ]; then
	cp "$W/runs/r16-wiki256-calib-sluice.plan.json" "$W/repeat.plan.json"
	timeout -k 5 60 "$BIN/sluice" run-plan --emulate --model gpt-7b --profile "$calib" \
		--iters "$ITERS" --warmup "$WARMUP" --report "$W/runs/repeat.report.json" \
		"$W/repeat.plan.json" >"$W/runs/repeat.table.txt" 2>&1
	echo "### repeat rc=$? $(tail -1 "$W/runs/repeat.table.txt")"
fi
python3 bench/gpu/fidelity_summary.py "$W/runs" "$calib" | tee "$OUT/summary.md"
tar -C "$W" -czf "$OUT/runs.tar.gz" runs
