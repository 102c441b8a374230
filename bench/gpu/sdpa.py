#!/usr/bin/env python3
"""PyTorch SDPA baseline for bench/gpu/run.sh: the same shapes as
`gpu_bench kernel` (batch 1, one sequence, bf16), timed with CUDA events
(median), causal counted as half the work, backward = (fwd+bwd) - fwd.

usage: sdpa.py REPS D:TOKENS:CAUSAL[:HEADS[:KV]] ...
prints: SDPA <backend> fwd|bwd D= tokens= causal= heads= kv= ms= TFLOPs=
"""
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel


def timed(fn, reps):
    for _ in range(2):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def time_passes(fwd, fwdbwd, reps):
    """Forward ms (no autograd) and backward ms as (fwd+bwd) - fwd."""
    with torch.no_grad():
        t_f = timed(fwd, reps)
    t_fb = timed(fwdbwd, reps)
    return t_f, max(t_fb - t_f, 1e-6)


def print_passes(prefix, tag, t_f, t_b, flop):
    """The fwd and bwd lines, the backward counted as 2.5x the forward's FLOPs."""
    for pas, ms, f in (("fwd", t_f, flop), ("bwd", t_b, 2.5 * flop)):
        print(f"{prefix} {pas} {tag} ms={ms:.3f} TFLOPs={f / (ms * 1e-3) / 1e12:.1f}",
              flush=True)


def main():
    reps = int(sys.argv[1])
    for spec in sys.argv[2:]:
        parts = [int(x) for x in spec.split(":")]
        d, n, causal = parts[0], parts[1], parts[2]
        h = parts[3] if len(parts) > 3 else 2048 // d
        kv = parts[4] if len(parts) > 4 else h
        g = torch.Generator(device="cuda").manual_seed(n * 131 + d)
        q = (torch.rand(1, h, n, d, device="cuda", generator=g) * 2 - 1).bfloat16()
        k = (torch.rand(1, kv, n, d, device="cuda", generator=g) * 2 - 1).bfloat16()
        v = (torch.rand(1, kv, n, d, device="cuda", generator=g) * 2 - 1).bfloat16()
        do = (torch.rand(1, h, n, d, device="cuda", generator=g) * 2 - 1).bfloat16()
        q.requires_grad_(True)
        k.requires_grad_(True)
        v.requires_grad_(True)
        flop = 4.0 * n * n * h * d * (0.5 if causal else 1.0)
        for name, backend in (("flash", SDPBackend.FLASH_ATTENTION),
                              ("cudnn", SDPBackend.CUDNN_ATTENTION)):
            try:
                with sdpa_kernel([backend]):
                    def fwd():
                        return F.scaled_dot_product_attention(
                            q, k, v, is_causal=bool(causal), enable_gqa=kv != h)

                    def fwdbwd():
                        out = fwd()
                        out.backward(do)

                    t_f, t_b = time_passes(fwd, fwdbwd, reps)
            except Exception as e:  # a backend may not support a shape
                print(f"SDPA {name} unavailable D={d} tokens={n} causal={causal}: "
                      f"{str(e).splitlines()[0][:120]}", flush=True)
                continue
            print_passes(f"SDPA {name}", f"D={d} tokens={n} causal={causal} heads={h} kv={kv}",
                         t_f, t_b, flop)
        del q, k, v, do
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
