#!/usr/bin/env python3
"""Writes a synthetic `sluice profile` file: per-layer times generated from
known constants (plus multiplicative noise from a seeded generator), in the
format `sluice profile --from FILE` refits. Used by tests/profiler."""
import json
import random
import sys

# known per-layer constants (gpt-7b-like magnitudes on a Hopper card)
GEMM = (1.9e-3, 0.05)           # ms/token, ms
HEAD = (0.35e-3, 0.02)
HOP = (4.0e-8, 2.0e-5, 0.03)    # ms/pair, ms/token, ms
MODEL = {"name": "synthetic", "hidden": 4096, "heads": 32, "kv_heads": 32, "head_dim": 128,
         "ffn": 16384, "layers": 32, "vocab": 50257}


def pairs(d, q, k, length):
    if d == 1:
        return length * (length + 1) / 2

    def cp(a, b, c):
        return c * c if b < a else (c * (c + 1) / 2 if b == a else 0.0)
    c = length // 2
    qa, qb, ka, kb = q, 2 * d - 1 - q, k, 2 * d - 1 - k
    return cp(qa, ka, c) + cp(qa, kb, c) + cp(qb, ka, c) + cp(qb, kb, c)


def main():
    noise = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    rnd = random.Random(int(sys.argv[2]) if len(sys.argv) > 2 else 1)

    def jit(x):
        return x * (1 + rnd.uniform(-noise, noise))
    toks = [1024, 2048, 4096, 8192, 16384]
    gemm = [{"tokens": n, "ms": jit(GEMM[0] * n + GEMM[1])} for n in toks]
    head = [{"tokens": n, "ms": jit(HEAD[0] * n + HEAD[1])} for n in toks[:4]]
    hops = []
    for d in (1, 2, 4, 8):
        for length in toks:
            for q, k in ([(0, 0)] if d == 1 else [(0, 0), (0, 1), (1, 0)]):
                t = HOP[0] * pairs(d, q, k, length) + HOP[1] * length + HOP[2]
                t = jit(t)
                hops.append({"d": d, "q_owner": q, "k_owner": k, "len": length,
                             "fwd_ms": t * 0.3, "bwd_ms": t * 0.7})
    doc = {"name": "synthetic", "calibration": {
        "format": "sluice.calibration/1", "model": MODEL,
        "provenance": {"card": "synthetic", "driver": "-", "cuda": "-", "nccl": "-",
                       "date": "-", "command": "synth.py", "gpus": 0},
        "measurements": {"gemm_per_layer": gemm, "lm_head": head, "attn_hops": hops,
                         "group_fixed_ms": 1.5, "attn_ws_bytes_per_token": 100000.0,
                         "d2h_gbps": 50.0, "h2d_gbps": 50.0,
                         "gpu_total_bytes": 85e9, "gpu_free_bytes": 84e9,
                         "p2p": {"measured": False, "gbps": 100.0, "latency_ms": 0.0,
                                 "note": "synthetic"}}}}
    json.dump(doc, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
