#!/usr/bin/env python3
"""Summarises the reports of bench/gpu/fidelity.sh (docs/fidelity.md): per
rank count, batch and profile, every policy's predicted and measured step and
the median |predicted - measured| / measured per group execution; whether the
measured ranking of policies matches the predicted one; calibrated vs FlexSP
plans measured. usage: fidelity_summary.py RUNS_DIR"""
import glob
import json
import os
import statistics
import sys


def main(d):
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
    print("| ranks | batch | profile | policy | groups | predicted step ms | measured step ms "
          "| step err | median group err |")
    print("|---|---|---|---|---|---|---|---|---|")
    keys = sorted(runs)
    allg = {"calib": [], "flexsp": []}
    alls = {"calib": [], "flexsp": []}
    for k in keys:
        x = runs[k]
        g = [gr["rel_err"] for gr in x["groups"] if gr["rel_err"] is not None]
        allg[k[2]] += g
        alls[k[2]].append(x["step_rel_err"])
        print(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]} | {len(x['groups'])} "
              f"| {x['predicted_step_ms']:.1f} | {x['measured_step_ms']:.1f} "
              f"| {100 * x['step_rel_err']:.1f}% | {100 * x['median_group_rel_err']:.1f}% |")
    print()
    for tag in ("calib", "flexsp"):
        if alls[tag]:
            print(f"{tag}: median group err over all group executions "
                  f"{100 * statistics.median(allg[tag]):.1f}% ({len(allg[tag])}), "
                  f"median step err {100 * statistics.median(alls[tag]):.1f}% "
                  f"({len(alls[tag])} plans)")
    print("\nranking of policies (fastest first), predicted vs measured:\n")
    for cfg in sorted({k[:3] for k in keys}):
        pols = [k[3] for k in keys if k[:3] == cfg]
        pr = sorted(pols, key=lambda p: runs[cfg + (p,)]["predicted_step_ms"])
        me = sorted(pols, key=lambda p: runs[cfg + (p,)]["measured_step_ms"])
        print(f"- r{cfg[0]} {cfg[1]} {cfg[2]}: predicted {' < '.join(pr)}; measured "
              f"{' < '.join(me)}; {'same' if pr == me else 'DIFFERENT'}")
    print("\nplans made with the calibrated profile vs FlexSP's constants, measured step ms:\n")
    for k in keys:
        if k[2] != "calib":
            continue
        f = runs.get((k[0], k[1], "flexsp", k[3]))
        if f:
            a, b = runs[k]["measured_step_ms"], f["measured_step_ms"]
            print(f"- r{k[0]} {k[1]} {k[3]}: calibrated {a:.1f}, flexsp {b:.1f} "
                  f"({'no slower' if a <= b * 1.0 else 'SLOWER'}, {100 * (a - b) / b:+.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
