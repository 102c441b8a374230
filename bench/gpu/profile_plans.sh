#!/usr/bin/env bash
# Plans of a batch made with a measured profile and with the FlexSP reference
# constants, each scored under the measured profile (CPU only; the table in
# docs/fidelity.md). Prints markdown rows.
# usage: bench/gpu/profile_plans.sh SLUICE MEASURED.json REF BATCH RANKS [POLICY...]
set -eu
sluice=$1 meas=$2 ref=$3 batch=$4 ranks=$5
shift 5
pols=${*:-sluice static}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
step() { # plan.json profile -> step ms under that profile
	"$sluice" score --profile "$2" --format json "$1" |
		python3 -c 'import json,sys; print("%.1f" % json.load(sys.stdin)["step_ms"])'
}
for pol in $pols; do
	for made in "$meas" "$ref"; do
		"$sluice" plan --profile "$made" --ranks "$ranks" --ranks-per-node 8 --policy "$pol" \
			--format json -o "$tmp/p.json" "$batch"
		echo "| $(basename "$batch") | $ranks | $pol | $(basename "$made" .json) |" \
			"$(step "$tmp/p.json" "$made") | $(step "$tmp/p.json" "$meas") |"
	done
done
