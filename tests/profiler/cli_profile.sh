#!/usr/bin/env bash
# `sluice profile` without a GPU: --from refits synthetic measurements (known
# constants, tests/profiler/synth.py) into a profile that `sluice plan`
# takes; bad input gets exit 2 and a message naming it; measuring in a build
# without GPU support says so (exit 1).
# usage: cli_profile.sh SLUICE PYTHON TMPDIR BATCH
set -u
sluice=$1 py=$2 tmp=$3 batch=$4
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$tmp" && mkdir -p "$tmp"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# expect RC PATTERN CMD...: exit status RC and PATTERN in stderr
expect() {
	local want=$1 pat=$2
	shift 2
	"$@" >"$tmp/out" 2>"$tmp/err"
	local rc=$?
	[ "$rc" = "$want" ] || fail "$* exited $rc, want $want: $(cat "$tmp/err")"
	[ -z "$pat" ] || grep -q -- "$pat" "$tmp/err" || fail "$*: stderr lacks '$pat': $(cat "$tmp/err")"
}

"$py" "$here/synth.py" 0.01 5 >"$tmp/synth.json" || fail "synth.py"
expect 0 "alpha1" "$sluice" profile --from "$tmp/synth.json" --name synth-fit -o "$tmp/p.json"
"$py" - "$tmp/p.json" <<'PY' || fail "the fitted profile is off"
import json, sys
p = json.load(open(sys.argv[1]))
fit = p["calibration"]["fit"]
# the constants synth.py used, per layer
for got, want in ((fit["gemm_ms_per_layer"][0], 1.9e-3), (fit["hop_ms_per_layer"][0], 4.0e-8),
                  (fit["lm_head_ms"][0], 0.35e-3)):
    assert abs(got / want - 1) < 0.03, (got, want)
assert p["name"] == "synth-fit" and p["sp_comm"] == "ring"
assert abs(p["alpha1"] - 32 * fit["hop_ms_per_layer"][0] / 2) < 1e-15
assert fit["resid_gemm"]["max_rel"] < 0.03
assert len(p["calibration"]["measurements"]["attn_hops"]) == 50
PY
# the profile plans
expect 0 "" "$sluice" plan --profile "$tmp/p.json" --ranks 16 --ranks-per-node 8 "$batch"
grep -q "step" "$tmp/out" || fail "plan printed no step time: $(head -5 "$tmp/out")"
# refitting its own output gives the same constants
expect 0 "" "$sluice" profile --from "$tmp/p.json" --name synth-fit -q -o "$tmp/p2.json"
"$py" -c "
import json, sys
a, b = (json.load(open(f)) for f in sys.argv[1:3])
for k in ('alpha1', 'alpha2', 'beta', 'act_bytes_per_token', 'pcie_gbps'):
    assert abs(a[k] / b[k] - 1) < 1e-6, k
" "$tmp/p.json" "$tmp/p2.json" || fail "refit of the written file differs"

# bad input
expect 2 "cannot open" "$sluice" profile --from "$tmp/nope.json"
echo '{"alpha1": 1}' >"$tmp/plain.json"
expect 2 "calibration" "$sluice" profile --from "$tmp/plain.json"
sed 's/"k_owner"/"k_ownex"/' "$tmp/synth.json" >"$tmp/bad.json"
expect 2 'k_owner' "$sluice" profile --from "$tmp/bad.json"
"$py" -c "
import json, sys
d = json.load(open(sys.argv[1]))
d['calibration']['measurements']['attn_hops'][6]['len'] = 1023
json.dump(d, open(sys.argv[2], 'w'))
" "$tmp/synth.json" "$tmp/odd.json"
expect 1 "len 1023" "$sluice" profile --from "$tmp/odd.json"
expect 2 "is odd" "$sluice" profile --hop-lens 1024,1023
expect 2 "not a list" "$sluice" profile --tokens 1024,x
expect 2 "unknown model" "$sluice" profile --model no-such-shape
expect 2 "multiple of kv_heads" "$sluice" profile --kv-heads 5
expect 1 "leaves nothing" "$sluice" profile --from "$tmp/synth.json" --mem-reserve 100000
# --help works in every build
"$sluice" profile --help >"$tmp/help" 2>&1 || fail "--help exited non-zero"
grep -q -- "--from FILE" "$tmp/help" || fail "--help lacks --from"
# measuring: a build without GPU support says so; with it, no GPU fails cleanly
if grep -q "no GPU support" "$tmp/help"; then
	expect 1 "GPU support was not built" "$sluice" profile --model gpt-7b -o "$tmp/m.json"
fi
[ "$fails" = 0 ] && echo "profiler_cli: all checks passed"
exit $((fails > 0))
