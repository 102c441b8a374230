#!/usr/bin/env bash
# Does settling each profile point (sluice profile --settle-ms) close the gap
# between the profile and emulated group executions? (docs/fidelity.md, "The
# card runs power-capped".) One device call, about 6 minutes: the SM clock
# sampled every 100 ms throughout; a gpt-7b profile with the default settling
# and one without; four identical d = 1 groups of 11,000 tokens emulated back
# to back under each profile's prediction; then the long-dominated batch's
# fidelity runs at 16 ranks with the settled profile. Writes at most 8 files.
# usage: OUT=DIR [BIN=DIR] bash bench/gpu/settle.sh
set -u
cd "$(dirname "$0")/../.."
. bench/gpu/env.sh
W=/tmp/settle
rm -rf "$W"
mkdir -p "$W"
nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader
nvidia-smi --query-gpu=timestamp,clocks.sm,power.draw,clocks_throttle_reasons.active \
	--format=csv -lms 100 >"$OUT/clk.csv" 2>&1 &
smi=$!
trap 'kill $smi 2>/dev/null' EXIT
echo "settled $(date -u +%T)"
timeout -k 5 330 "$BIN/sluice" profile --model gpt-7b --reps 7 --name gpu-gpt-7b \
	-o "$OUT/settled.json" >"$OUT/settled.txt" 2>&1
echo "profile rc=$?"
echo "unsettled $(date -u +%T)"
timeout -k 5 120 "$BIN/sluice" profile --model gpt-7b --reps 7 --settle-ms 0 --name gpu-gpt-7b \
	-o "$OUT/unsettled.json" >"$W/unsettled.txt" 2>&1
echo "profile --settle-ms 0 rc=$?"
echo "emulate $(date -u +%T)"
for p in "$OUT/unsettled.json" "$OUT/settled.json"; do
	# planned with the profile it is emulated under: run-plan checks the
	# plan's predicted times against the profile it is given
	printf '11000\n11000\n11000\n11000\n' |
		"$BIN/sluice" plan --ranks 4 --ranks-per-node 4 --profile "$p" --policy static \
			--sp 1 --format json -o "$W/four.plan.json" - || exit 1
	echo "== predicted by $(basename "$p")"
	timeout -k 5 60 "$BIN/sluice" run-plan --emulate --model gpt-7b --profile "$p" --iters 3 \
		--warmup 1 "$W/four.plan.json" 2>&1 | head -6
done | tee "$OUT/four.txt"
echo "fidelity $(date -u +%T)"
OUT=$W/fid BIN=$BIN CALIB=$OUT/settled.json SPECS="16 long16" BUDGET=${BUDGET:-90} \
	bash bench/gpu/fidelity.sh >"$OUT/fidelity-run.txt" 2>&1
echo "fidelity rc=$?"
cp "$W/fid/summary.md" "$OUT/summary.md" 2>/dev/null
grep "###" "$OUT/fidelity-run.txt"
echo "done $(date -u +%T)"
