#!/usr/bin/env python3
"""Short tables from bench/gpu/run.sh's logs (markdown, printed last).

usage: summarize.py OUT_DIR [CARD]
"""
import json
import os
import re
import sys
from collections import defaultdict


def kv(line):
    return dict(re.findall(r"(\w+)=([^\s]+)", line))


def read(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


def main():
    out = sys.argv[1]
    card = sys.argv[2] if len(sys.argv) > 2 else "?"
    print(f"# sluice GPU run on {card}\n")

    # ---- correctness
    chk = read(os.path.join(out, "check.log"))
    if chk:
        fails = [l for l in chk if l.startswith("FAIL")]
        oks = [l for l in chk if l.startswith("ok  ")]
        rcs = [l for l in chk if l.startswith("### rc=")]
        bad_rc = [l for l in rcs if not l.startswith("### rc=0") and not l.startswith("### rc=77")]
        plan_checks = [l for l in chk if l.startswith("check (")]
        worst = defaultdict(float)
        for l in oks + fails:
            for name in ("O", "LSE", "dQ", "dK", "dV"):
                m = re.search(rf"\b{name} ([0-9.e+-]+)", l)
                if m:
                    worst[name] = max(worst[name], float(m.group(1)))
        print("## correctness (bf16 vs fp64 reference, tolerance 1e-2)\n")
        print(f"- {len(oks)} checks ok, {len(fails)} failed; {len(rcs)} commands, "
              f"{len(bad_rc)} with a non-zero exit")
        print("- worst relative error: " + ", ".join(f"{k} {v:.2e}" for k, v in worst.items()))
        for l in plan_checks:
            print(f"- run-plan: {l}")
        for l in fails[:10]:
            print(f"- FAIL: {l}")
        print()

    # ---- kernels vs SDPA
    ours = defaultdict(dict)  # (pass, D, tokens, causal, H, KH) -> variant -> tflops
    for l in read(os.path.join(out, "kernel.log")):
        if l.startswith("KERNEL "):
            p = l.split()[1]
            d = kv(l)
            key = (p, int(d["D"]), int(d["tokens"]), int(d["causal"]), int(d["heads"]), int(d["kv"]))
            variant = l.split()[7]
            ours[key][variant] = float(d["TFLOPs"])
    sd = {}
    for l in read(os.path.join(out, "sdpa.log")):
        if l.startswith("SDPA ") and "unavailable" not in l:
            w = l.split()
            d = kv(l)
            key = (w[2], int(d["D"]), int(d["tokens"]), int(d["causal"]), int(d["heads"]), int(d["kv"]))
            sd[(w[1],) + key] = float(d["TFLOPs"])
    if ours:
        print("## per-hop kernel vs PyTorch SDPA (TFLOP/s, causal = half the work, "
              "bwd = 2.5x fwd FLOPs)\n")
        print("| pass | D | tokens | causal | heads/kv | sluice best (variant) | SDPA flash | ratio | SDPA cuDNN |")
        print("|---|---|---|---|---|---|---|---|---|")
        for key in sorted(ours, key=lambda k: (k[0] != "fwd", -k[1], k[2], -k[3], k[5])):
            best = max(ours[key], key=ours[key].get)
            t = ours[key][best]
            fl = sd.get(("flash",) + key)
            cu = sd.get(("cudnn",) + key)
            ratio = f"{t / fl:.2f}" if fl else "-"
            print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {key[4]}/{key[5]} | {t:.0f} ({best}) | "
                  f"{fl if fl is not None else '-'} | {ratio} | {cu if cu is not None else '-'} |")
        # every variant, for choosing defaults
        allv = defaultdict(list)
        for key, vs in ours.items():
            for v, t in vs.items():
                allv[(key[0], key[1], v)].append(t)
        print("\nmean TFLOP/s per variant: " + "; ".join(
            f"{p} {v} {sum(ts) / len(ts):.0f}" for (p, D, v), ts in sorted(allv.items())))
        print()

    # ---- ring
    ring = defaultdict(list)
    for l in read(os.path.join(out, "ring.log")):
        if l.startswith("RING "):
            d = kv(l)
            ring[(int(d["tokens"]), d["pass"], int(d["g"]))].append(d)
    if ring:
        print("## ring attention (causal, 16 heads / 4 KV heads, D 128): per rank, median of 5\n")
        print("| tokens | pass | ranks | wall ms (max rank) | compute ms (max) | overlap eff. | speedup vs 1 | "
              "in-ring GB/s per hop | bare p2p GB/s |")
        print("|---|---|---|---|---|---|---|---|---|")
        for key in sorted(ring):
            rows = ring[key]
            wall = max(float(r["wall_ms"]) for r in rows)
            comp = max(float(r["compute_ms"]) for r in rows)
            eff = min(float(r["compute_ms"]) / float(r["wall_ms"]) for r in rows)
            base = ring.get((key[0], key[1], 1))
            sp = max(float(r["wall_ms"]) for r in base) / wall if base else 0
            hops = int(rows[0]["hops"])
            comm = max(float(r["comm_ms"]) for r in rows)
            sent = float(rows[0].get("bytes", 0))
            inring = sent / (comm * 1e-3) / 1e9 if hops and comm > 0 else 0
            p2p = [float(r["p2p_ms"]) for r in rows if "p2p_ms" in r and float(r["p2p_ms"]) > 0]
            bare = float(rows[0]["hop_bytes"]) / (max(p2p) * 1e-3) / 1e9 if p2p else 0
            print(f"| {key[0]} | {key[1]} | {key[2]} | {wall:.2f} | {comp:.2f} | {eff:.3f} | {sp:.2f} | "
                  f"{inring:.0f} | {bare:.0f} |")
        print("\n(overlap eff. = per-rank kernel time / wall time, worst rank; in-ring GB/s = bytes a rank "
              "sent / time NCCL was in flight on its stream (waits for the peer included); backward hops "
              "also carry fp32 dK/dV)\n")

    # ---- plans
    try:
        reps = json.load(open(os.path.join(out, "reports.json")))
    except (OSError, ValueError):
        reps = {}
    if reps:
        print("## plans on 4 ranks (sluice-worker, cuda backend): predicted vs measured\n")
        print("| policy | predicted step ms | measured step ms | groups (slot: ranks tokens pred/meas ms) |")
        print("|---|---|---|---|")
        for pol, r in reps.items():
            if not isinstance(r, dict):
                print(f"| {pol} | - | - | {r} |")
                continue
            gs = "; ".join(
                f"{g['slot']}: {','.join(map(str, g['ranks']))} {g['tokens']} "
                f"{g['predicted_ms']:.1f}/{g['measured']['total_ms']:.1f}" for g in r.get("groups", []))
            print(f"| {pol} | {r.get('predicted_step_ms', 0):.1f} | {r.get('measured_step_ms', 0):.1f} | {gs} |")
        print()


if __name__ == "__main__":
    main()
