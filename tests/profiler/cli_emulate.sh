#!/usr/bin/env bash
# `sluice run-plan --emulate` bookkeeping and the trace export without a GPU:
# rank times read back with --measured (synthetic, chosen here) must give
# group times = the slowest rank's, starts and step by the reference timing
# rule (recomputed here independently from the plan), predicted times equal
# to the plan's own, relative errors, and a Chrome trace with one "X" event
# per group execution per rank and lane; `sluice plan --trace-json` the
# predicted lane only. Bad input exits 2 naming it; emulating in a build
# without GPU support says so (exit 1).
# usage: cli_emulate.sh SLUICE PYTHON TMPDIR
set -u
sluice=$1 py=$2 tmp=$3
src=$(cd "$(dirname "$0")/../.." && pwd)
rm -rf "$tmp" && mkdir -p "$tmp"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
expect() { # RC PATTERN CMD...: exit status RC and PATTERN in stderr
	local want=$1 pat=$2
	shift 2
	"$@" >"$tmp/out" 2>"$tmp/err"
	local rc=$?
	[ "$rc" = "$want" ] || fail "$* exited $rc, want $want: $(cat "$tmp/err")"
	[ -z "$pat" ] || grep -q -- "$pat" "$tmp/err" || fail "$*: stderr lacks '$pat': $(cat "$tmp/err")"
}

# a plan of several slots and group sizes on 16 ranks
"$py" -c 'import random
r = random.Random(3)
print("\n".join(str(r.choice([300, 2000, 9000, 30000, 70000])) for _ in range(40)))' >"$tmp/batch.txt"
expect 0 "" "$sluice" plan --ranks 16 --profile gpt-7b-flexsp --format json -o "$tmp/plan.json" \
	--trace-json "$tmp/plan.trace.json" "$tmp/batch.txt"
# synthetic rank times: distinct per group and rank (so max and the rule matter)
"$py" - "$tmp/plan.json" "$tmp/meas.json" <<'PY' || fail "making the synthetic times"
import json, sys
p = json.load(open(sys.argv[1]))
groups = []
for s, slot in enumerate(p["slots"]):
    for k, g in enumerate(slot["groups"]):
        groups.append({"rank_ms": [100.0 + 37 * s + 11 * k + 3 * i + (7 if i == len(g["ranks"]) // 2 else 0)
                                   for i in range(len(g["ranks"]))],
                       "slowest_rank_parts_ms": {"linear": 1.0, "attention": 2.0, "offload": 0.0, "head": 0.5}})
json.dump({"groups": groups}, open(sys.argv[2], "w"))
PY
expect 0 "" "$sluice" run-plan --emulate --measured "$tmp/meas.json" --profile gpt-7b-flexsp \
	--report "$tmp/rep.json" --trace-json "$tmp/run.trace.json" "$tmp/plan.json"
grep -q "step: predicted" "$tmp/out" || fail "no step line in the table: $(tail -3 "$tmp/out")"
"$py" - "$tmp/plan.json" "$tmp/meas.json" "$tmp/rep.json" "$tmp/run.trace.json" \
	"$tmp/plan.trace.json" <<'PY' || fail "the report or the traces are wrong"
import json, statistics, sys
plan, meas, rep, tr, ptr = (json.load(open(a)) for a in sys.argv[1:6])
groups = [g for s in plan["slots"] for g in s["groups"]]
# measured = the slowest rank's compute + the transfer the model leaves exposed
# (gpt-7b-flexsp is Ulysses: its all-to-all, checked against the ring case below)
comp = [max(x["rank_ms"]) for x in meas["groups"]]
xfer = [g["modeled_transfer_ms"] for g in rep["groups"]]
assert all(x >= 0 for x in xfer) and any(x > 0 for x in xfer), xfer
for g, rg in zip((g for s in plan["slots"] for g in s["groups"]), rep["groups"]):
    assert (rg["modeled_transfer_ms"] > 0) == (len(g["ranks"]) > 1), rg
m = [c + x for c, x in zip(comp, xfer)]
assert all(abs(rg["measured_compute_ms"] - c) < 1e-9 for rg, c in zip(rep["groups"], comp))
# the timing rule, independently
ready = [0.0] * plan["ranks"]
starts = []
for g, t in zip(groups, m):
    st = max(ready[r] for r in g["ranks"])
    starts.append(st)
    for r in g["ranks"]:
        ready[r] = st + t
step = max(ready)
assert rep["format"] == "sluice.emulation/1" and len(rep["groups"]) == len(groups)
assert abs(rep["measured_step_ms"] - step) < 1e-6 * step, (rep["measured_step_ms"], step)
assert abs(rep["predicted_step_ms"] - plan["predicted"]["step_ms"]) < 0.006
assert abs(rep["step_rel_err"] - abs(rep["predicted_step_ms"] - step) / step) < 1e-12
errs = []
for g, rg, t, st in zip(groups, rep["groups"], m, starts):
    assert rg["ranks"] == g["ranks"]
    assert abs(rg["measured_ms"] - t) < 1e-9 and abs(rg["measured_start_ms"] - st) < 1e-6
    assert abs(rg["rel_err"] - abs(rg["predicted_ms"] - t) / t) < 1e-9
    assert rg["slowest_rank_parts_ms"]["attention"] == 2.0
    errs.append(rg["rel_err"])
assert abs(rep["median_group_rel_err"] - statistics.median(errs)) < 1e-9
for r, pr in enumerate(rep["per_rank"]):
    assert abs(pr["measured_ms"] - ready[r]) < 1e-6
    assert abs(pr["predicted_ms"] - plan["predicted"]["per_rank_ms"][r]) < 0.006  # the plan prints 2 decimals
# traces: one X event per group and rank per lane, microseconds, pid = rank
nx = sum(len(g["ranks"]) for g in groups)
for t, lanes in ((tr, {0: "predicted", 1: "measured"}), (ptr, {0: "predicted"})):
    ev = t["traceEvents"]
    xs = [e for e in ev if e["ph"] == "X"]
    assert len(xs) == nx * len(lanes), (len(xs), nx)
    names = {(e["pid"], e["tid"]): e["args"]["name"] for e in ev
             if e["ph"] == "M" and e["name"] == "thread_name"}
    assert len(names) == plan["ranks"] * len(lanes) and set(names.values()) == set(lanes.values())
    for e in xs:
        assert e["cat"] == lanes[e["tid"]] and 0 <= e["pid"] < plan["ranks"] and e["dur"] > 0
meas_x = [e for e in tr["traceEvents"] if e["ph"] == "X" and e["tid"] == 1]
k = 0
for g, t, st in zip(groups, m, starts):
    for r in g["ranks"]:
        e = meas_x[k]
        k += 1
        assert e["pid"] == r and abs(e["ts"] - st * 1000) < 1e-3 and abs(e["dur"] - t * 1000) < 1e-3
pred_x = [e for e in ptr["traceEvents"] if e["ph"] == "X"]
assert abs(max(e["ts"] + e["dur"] for e in pred_x) - plan["predicted"]["step_ms"] * 1000) < 1
PY
# a ring profile (h100-gpt-7b: 100 / 25 GB/s): the exposed transfer per group is
# sum over sequences of max(0, K/V transfer - ring compute), computed here
# (static on rings of 16: two nodes at 25 GB/s, so transfers are exposed)
ring=$src/profiles/h100-gpt-7b.json
expect 0 "" "$sluice" plan --ranks 16 --profile "$ring" --policy static --sp 16 --format json \
	-o "$tmp/plan16.json" "$tmp/batch.txt"
"$py" -c 'import json, sys
p = json.load(open(sys.argv[1]))
json.dump({"groups": [{"rank_ms": [50.0 + 5 * i for i in range(len(g["ranks"]))]}
                      for s in p["slots"] for g in s["groups"]]}, open(sys.argv[2], "w"))' \
	"$tmp/plan16.json" "$tmp/meas16.json" || fail "making the ring case's times"
expect 0 "" "$sluice" run-plan --emulate --measured "$tmp/meas16.json" --profile "$ring" \
	--report "$tmp/ring.json" "$tmp/plan16.json"
"$py" - "$tmp/plan16.json" "$tmp/meas16.json" "$tmp/ring.json" "$ring" \
	<<'PY' || fail "the exposed ring transfer is wrong"
import json, sys
plan, meas, rep, prof = (json.load(open(a)) for a in sys.argv[1:5])
lens = {s["id"]: s["length"] for s in plan["sequences"]}
rpn = plan["ranks_per_node"]
groups = [g for s in plan["slots"] for g in s["groups"]]
exposed = 0
for g, rg, mg in zip(groups, rep["groups"], meas["groups"]):
    d = len(g["ranks"])
    one = len({r // rpn for r in g["ranks"]}) == 1
    bw = prof["p2p_gbps_intra"] if one else prof["p2p_gbps_inter"]
    want = 0.0
    for it in g["sequences"]:
        if d == 1:
            continue
        s = lens[it["id"]]
        pd = -(-s // (2 * d)) * 2 * d
        t = (prof["alpha1"] * pd * pd + prof["alpha2"] * pd) / d + prof["ring_tok_ms"] * pd * (1 - 1 / d)
        tm = (d - 1) * (prof["kv_bytes_per_token"] * pd / d / 2**20) / bw
        want += max(0.0, tm - t)
    assert abs(rg["modeled_transfer_ms"] - want) <= 1e-9 * max(1.0, want), (rg, want)
    assert abs(rg["measured_ms"] - max(mg["rank_ms"]) - want) <= 1e-9 * max(1.0, want)
    exposed += want > 0
assert exposed > 0, "no group of this plan has an exposed transfer: the check proves nothing"
PY
# bad input: group count, a negative time, options without --emulate
"$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); d["groups"].pop(); json.dump(d, open(sys.argv[2], "w"))' \
	"$tmp/meas.json" "$tmp/short.json"
expect 2 "groups" "$sluice" run-plan --emulate --measured "$tmp/short.json" "$tmp/plan.json"
"$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); d["groups"][0]["rank_ms"][0]=-1; json.dump(d, open(sys.argv[2], "w"))' \
	"$tmp/meas.json" "$tmp/neg.json"
expect 2 "rank_ms\[0\]" "$sluice" run-plan --emulate --measured "$tmp/neg.json" "$tmp/plan.json"
expect 2 "need --emulate" "$sluice" run-plan --trace-json "$tmp/x.json" "$tmp/plan.json"
expect 2 "model" "$sluice" run-plan --emulate --model no-such-model "$tmp/plan.json"
if ! "$sluice" profile --help | grep -q "no GPU support"; then :; else
	expect 1 "GPU support was not built" "$sluice" run-plan --emulate "$tmp/plan.json"
fi
[ "$fails" = 0 ] && echo "cli_emulate: ok"
exit $((fails > 0))
