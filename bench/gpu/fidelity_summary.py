#!/usr/bin/env python3
"""Summarises the reports of bench/gpu/fidelity.sh (docs/fidelity.md): per
rank count, batch and profile, every policy's predicted and measured step and
the median |predicted - measured| / measured per group execution; whether the
measured ranking of policies matches the predicted one (whole order, and pair
by pair where the predictions differ); calibrated vs FlexSP plans measured,
both under one communication model (the calibrated profile's: each group's
measured compute plus the ring transfer that profile leaves exposed, then the
timing rule); and, per part of a group execution (the layers' linear part,
attention), the slowest rank's measured time against the calibrated
profile's own per-layer fits, which says which term of the model is off.
usage: fidelity_summary.py RUNS_DIR [CALIB_PROFILE]"""
import glob
import json
import os
import statistics
import sys


# predicted steps closer than this are a tie: their measured order says nothing
TIE = 1e-3


def exposed_ms(prof, plan, group):
    """The ring transfer prof's model leaves exposed in one group execution
    (planner/cost.c sl_cost_seq_comm_ms, ring form): per sequence, the K/V
    transfer of d - 1 hops minus the ring's compute, when longer."""
    d = len(group["ranks"])
    if d == 1:
        return 0.0
    lens = plan["_lens"]
    one = len({r // plan["ranks_per_node"] for r in group["ranks"]}) == 1
    bw = prof["p2p_gbps_intra"] if one else prof["p2p_gbps_inter"]
    t = 0.0
    for it in group["sequences"]:
        pd = -(-lens[it["id"]] // (2 * d)) * 2 * d
        comp = (prof["alpha1"] * pd * pd + prof["alpha2"] * pd) / d + \
            prof.get("ring_tok_ms", 0.0) * pd * (1 - 1 / d)
        tm = (d - 1) * (prof["kv_bytes_per_token"] * pd / d / 2**20) / bw
        t += max(0.0, tm - comp)
    return t


def step_under(prof, plan, rep):
    """Measured step of a report with prof's transfers: the timing rule over
    (slowest rank's compute + exposed transfer) per group, plus grad sync."""
    groups = [g for s in plan["slots"] for g in s["groups"]]
    ready = [0.0] * plan["ranks"]
    for g, rg in zip(groups, rep["groups"]):
        t = max(rg["rank_ms"]) + exposed_ms(prof, plan, g)
        st = max(ready[r] for r in g["ranks"])
        for r in g["ranks"]:
            ready[r] = st + t
    return max(ready) + prof.get("grad_sync_ms", 0.0)


def part_models(prof, plan, group):
    """The calibrated profile's per-layer fits (profiler/fit.c) for one group
    execution, per rank: (linear ms, attention ms). Linear: L (g0 t + g1) with t
    the tokens per rank; attention: L (sum over sequences of (a/2 p^2 +
    (b + a/2) p) / d + c) plus the ring extension, a, b, c the hop fit."""
    cal = prof["calibration"]
    fit = cal["fit"]
    layers = cal["model"]["layers"]
    g0, g1 = fit["gemm_ms_per_layer"]
    a, b, c = fit["hop_ms_per_layer"]
    rt = prof.get("ring_tok_ms", 0.0)
    d = len(group["ranks"])
    tok = att = 0.0
    for it in group["sequences"]:
        p = plan["_lens"][it["id"]]
        if d > 1:
            p = -(-p // (2 * d)) * 2 * d
            att += rt * p * (1 - 1 / d)
        tok += p / d
        att += layers * (a / 2 * p * p + (b + a / 2) * p) / d
    return layers * (g0 * tok + g1), att + layers * c


def parts(d, runs, prof):
    """Measured / modeled - 1 per part over the calibrated runs' group
    executions (medians; groups whose modeled part is under 50 ms left out),
    split by ring size and by the number of sequences in the group."""
    rows = []
    for k, rep in sorted(runs.items()):
        if k[2] != "calib":
            continue
        plan = json.load(open(os.path.join(d, f"r{k[0]}-{k[1]}-calib-{k[3]}.plan.json")))
        plan["_lens"] = {x["id"]: x["length"] for x in plan["sequences"]}
        groups = [g for s in plan["slots"] for g in s["groups"]]
        for g, rg in zip(groups, rep["groups"]):
            lin, att = part_models(prof, plan, g)
            m = rg["slowest_rank_parts_ms"]
            rows.append((len(g["ranks"]), len(g["sequences"]), lin, m["linear"], att,
                         m["attention"]))
    if not rows:
        return

    def med(v):
        return f"{100 * statistics.median(v):+.1f}% ({len(v)})" if v else "-"

    print("\nmeasured / modeled - 1 per part of a group execution (slowest rank, the "
          "calibrated profile's per-layer fits; median (groups)):\n")
    print("| groups | linear | attention |")
    print("|---|---|---|")
    sel = [("all", lambda r: True), ("ring size 1", lambda r: r[0] == 1),
           ("ring size 2+", lambda r: r[0] > 1), ("1-3 sequences", lambda r: r[1] <= 3),
           ("4+ sequences", lambda r: r[1] > 3)]
    for name, f in sel:
        lin = [r[3] / r[2] - 1 for r in rows if f(r) and r[2] >= 50]
        att = [r[5] / r[4] - 1 for r in rows if f(r) and r[4] >= 50]
        print(f"| {name} | {med(lin)} | {med(att)} |")


def main(d, calib=None):
    runs = {}
    for p in sorted(glob.glob(os.path.join(d, "r*.report.json"))):
        name = os.path.basename(p)[: -len(".report.json")]
        if name.count("-") < 3:  # repeat.report.json: the repeatability run
            continue
        r, batch, tag, pol = name.split("-", 3)
        runs[(int(r[1:]), batch, tag, pol)] = json.load(open(p))
    if not runs:
        print("no reports")
        return 1
    r0 = next(iter(runs.values()))
    print(f"card: {r0['card']}; date: {r0['date']}; model: {r0['model']}\n")
    # mean rank err: measured / predicted - 1 averaged over ranks (signed: the
    # bias); rank spread: the slowest predicted rank over the fastest. A plan
    # whose ranks are predicted equal takes the noisiest rank as its step, so
    # its step err exceeds its mean rank err; a plan with one dominant rank's
    # does not (docs/fidelity.md, fourth stop)
    print("| ranks | batch | profile | policy | groups | predicted step ms | measured step ms "
          "| step err | median group err | mean rank err | predicted rank spread |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    keys = sorted(runs)
    allg = {"calib": [], "flexsp": []}
    alls = {"calib": [], "flexsp": []}
    for k in keys:
        x = runs[k]
        g = [gr["rel_err"] for gr in x["groups"] if gr["rel_err"] is not None]
        allg[k[2]] += g
        alls[k[2]].append(x["step_rel_err"])
        ranks = [pr for pr in x.get("per_rank", []) if pr.get("predicted_ms")]
        bias = spread = "-"
        if ranks:
            bias = f"{100 * statistics.mean(pr['measured_ms'] / pr['predicted_ms'] - 1 for pr in ranks):+.1f}%"
            pms = [pr["predicted_ms"] for pr in ranks]
            spread = f"{100 * (max(pms) / min(pms) - 1):.1f}%"
        print(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {len(x['groups'])} "
              f"| {x['predicted_step_ms']:.1f} | {x['measured_step_ms']:.1f} "
              f"| {100 * x['step_rel_err']:.1f}% | {100 * x['median_group_rel_err']:.1f}% "
              f"| {bias} | {spread} |")
    print()
    for tag in ("calib", "flexsp"):
        if alls[tag]:
            print(f"{tag}: median group err over all group executions "
                  f"{100 * statistics.median(allg[tag]):.1f}% ({len(allg[tag])}), "
                  f"median step err {100 * statistics.median(alls[tag]):.1f}% "
                  f"({len(alls[tag])} plans)")
    print("\nranking of policies (fastest first), predicted vs measured:\n")
    agree = pairs = 0
    for cfg in sorted({k[:3] for k in keys}):
        pols = [k[3] for k in keys if k[:3] == cfg]
        pred = {p: runs[cfg + (p,)]["predicted_step_ms"] for p in pols}
        meas = {p: runs[cfg + (p,)]["measured_step_ms"] for p in pols}
        pr = sorted(pols, key=lambda p: pred[p])
        me = sorted(pols, key=lambda p: meas[p])
        wrong = []
        for i, a in enumerate(pols):
            for b in pols[i + 1:]:
                if abs(pred[a] - pred[b]) <= TIE * min(pred[a], pred[b]):
                    continue  # a predicted tie
                pairs += 1
                if (pred[a] < pred[b]) == (meas[a] < meas[b]):
                    agree += 1
                else:
                    wrong.append(f"{a}/{b}")
        print(f"- r{cfg[0]} {cfg[1]} {cfg[2]}: predicted {' < '.join(pr)}; measured "
              f"{' < '.join(me)}; {'same' if pr == me else 'different'}; pairs with "
              f"distinct predictions ordered alike: "
              f"{'all' if not wrong else 'all but ' + ', '.join(wrong)}")
    print(f"\npairs of policies with distinct predictions (> {100 * TIE:.1f}% apart) whose "
          f"measured order matches: {agree} of {pairs}")
    if calib is None:
        return 0
    prof = json.load(open(calib))
    if "calibration" in prof:
        parts(d, runs, prof)
    print("\nplans made with the calibrated profile vs FlexSP's constants, measured step ms "
          "(measured compute + the calibrated profile's exposed ring transfers, timing rule):\n")
    nslow = ncmp = 0
    for k in keys:
        if k[2] != "calib" or (k[0], k[1], "flexsp", k[3]) not in runs:
            continue
        st = []
        for tag in ("calib", "flexsp"):
            name = f"r{k[0]}-{k[1]}-{tag}-{k[3]}"
            plan = json.load(open(os.path.join(d, name + ".plan.json")))
            plan["_lens"] = {x["id"]: x["length"] for x in plan["sequences"]}
            st.append(step_under(prof, plan, runs[(k[0], k[1], tag, k[3])]))
        a, b = st
        ncmp += 1
        nslow += a > b
        print(f"- r{k[0]} {k[1]} {k[3]}: calibrated {a:.1f}, flexsp {b:.1f} "
              f"({'no slower' if a <= b else 'SLOWER'}, {100 * (a - b) / b:+.1f}%)")
    print(f"\ncalibrated plans no slower on {ncmp - nslow} of {ncmp}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
