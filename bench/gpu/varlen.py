#!/usr/bin/env python3
"""PyTorch baselines for `gpu_bench packed`: attention over several sequences
packed into one buffer (a d = 1 group of a plan), bf16, CUDA-event medians,
causal counted as half the work, FLOPs summed per sequence, backward =
(fwd+bwd) - fwd counted as 2.5x the forward's FLOPs.

Backends, each where this PyTorch has it:
  flash-varlen  torch.nn.attention.varlen.varlen_attn (FlashAttention kernels,
                cumulative offsets, the packed layout gpu_bench uses)
  cudnn-njt     scaled_dot_product_attention on nested jagged tensors with
                the cuDNN backend
A backend that is missing or refuses the shape prints one "unavailable" line.

usage: varlen.py REPS D CAUSAL HEADS LEN...
prints: VARLEN <backend> fwd|bwd D= tokens= segs= causal= heads= ms= TFLOPs=
"""
import inspect
import sys

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from sdpa import print_passes, time_passes  # bench/gpu/sdpa.py, beside this file


def flash_varlen(q, k, v, cu, maxlen, causal):
    from torch.nn.attention.varlen import varlen_attn
    params = inspect.signature(varlen_attn).parameters
    kw = {}
    if causal:
        if "is_causal" in params:
            kw["is_causal"] = True
        else:  # later releases: a window of everything before the row
            kw["window_size"] = (-1, 0)

    def run():
        return varlen_attn(q, k, v, cu, cu, maxlen, maxlen, **kw)
    return run


def cudnn_njt(q, k, v, cu, maxlen, causal):
    def nest(x):
        nt = torch.nested.nested_tensor_from_jagged(x, cu.to(torch.int64))
        return nt.transpose(1, 2)  # (B, H, j, D)
    qn, kn, vn = nest(q), nest(k), nest(v)

    def run():
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            return F.scaled_dot_product_attention(qn, kn, vn, is_causal=causal)
    return run


def main():
    reps, d, causal, h = (int(x) for x in sys.argv[1:5])
    lens = [int(x) for x in sys.argv[5:]]
    if reps < 1 or d not in (64, 128) or h < 1 or not lens or min(lens) < 1:
        sys.exit("usage: varlen.py REPS D(64|128) CAUSAL HEADS LEN...")
    causal = bool(causal)
    n = sum(lens)
    cu = torch.tensor([0] + lens, device="cuda", dtype=torch.int32).cumsum(0).to(torch.int32)
    g = torch.Generator(device="cuda").manual_seed(n * 131 + d)

    def rnd():
        return (torch.rand(n, h, d, device="cuda", generator=g) * 2 - 1).bfloat16()
    flop = sum(4.0 * s * s * h * d for s in lens) * (0.5 if causal else 1.0)
    tag = f"D={d} tokens={n} segs={len(lens)} causal={int(causal)} heads={h}"
    for name, make in (("flash-varlen", flash_varlen), ("cudnn-njt", cudnn_njt)):
        q, k, v, do = rnd(), rnd(), rnd(), rnd()
        for x in (q, k, v):
            x.requires_grad_(True)
        try:
            fwd = make(q, k, v, cu, max(lens), causal)

            def fwdbwd():
                out = fwd()
                if out.is_nested:  # back to the packed (tokens, H, D) layout
                    out = out.transpose(1, 2).values()
                out.backward(do)
            t_f, t_b = time_passes(fwd, fwdbwd, reps)
        except Exception as e:  # a backend may be missing or refuse the shape
            msg = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
            print(f"VARLEN {name} unavailable {tag}: {msg}", flush=True)
            continue
        print_passes(f"VARLEN {name}", tag, t_f, t_b, flop)
        del q, k, v, do
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
