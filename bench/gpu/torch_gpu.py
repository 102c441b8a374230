"""sluice.torch on one GPU (issue 13): ring_attention's forward and backward
(libsluice_ring's CUDA engine: sluice's kernels, its NCCL communicator,
PyTorch's current stream) against PyTorch SDPA per sequence, both in bf16,
each measured against an fp32 reference; then fwd+bwd time of the same packed
batch, sluice.torch vs SDPA (flash and cuDNN backends, one call per
sequence). One GPU means rings of one rank: the multi-rank ring path runs on
CPU in CI (tests/python/test_torch.py) and on 2+ GPUs via gpu_ring.

    python3 bench/gpu/torch_gpu.py [--reps 10]

Prints one JSON line per case and a table last; exit 0 when every case's
worst error is within max(2 x SDPA's own bf16 error, 2^-7 of the largest
reference value), 1 otherwise."""

import argparse
import json
import math
import sys

import torch
import torch.nn.functional as F

import sluice
import sluice.torch as st
from sdpa import timed  # bench/gpu/sdpa.py: CUDA-event median after warm-up

CASES = [  # (label, heads, kv_heads, head_dim, lengths)
    ("d128 gqa4 mixed", 16, 4, 128, [8192, 4097, 2048, 1000, 63]),
    ("d64 gqa2 mixed", 16, 8, 64, [8192, 4097, 2048, 1000, 63]),
    ("d128 mha one 16K", 16, 16, 128, [16384]),
]


def hand_plan(lengths):
    seqs = ",".join('{"id":%d,"length":%d}' % (i, s) for i, s in enumerate(lengths))
    ids = ",".join('{"id":%d}' % i for i in range(len(lengths)))
    return sluice.as_plan(
        '{"format":"sluice.plan/1","policy":"hand","profile":"h100-sxm-llama8b","ranks":1,'
        '"ranks_per_node":1,"cap_tokens":1000000,"sequences":[%s],'
        '"slots":[{"groups":[{"ranks":[0],"sequences":[%s]}]}]}' % (seqs, ids))


def sdpa_seq(q, k, v, backend=None):
    """Causal GQA attention of one sequence q [s,H,D], k/v [s,KH,D] via SDPA."""
    rep = q.shape[1] // k.shape[1]
    qq = q.transpose(0, 1).unsqueeze(0)
    kk = k.repeat_interleave(rep, dim=1).transpose(0, 1).unsqueeze(0)
    vv = v.repeat_interleave(rep, dim=1).transpose(0, 1).unsqueeze(0)
    if backend is None:
        o = F.scaled_dot_product_attention(qq, kk, vv, is_causal=True)
    else:
        with torch.nn.attention.sdpa_kernel(backend):
            o = F.scaled_dot_product_attention(qq, kk, vv, is_causal=True)
    return o.squeeze(0).transpose(0, 1)


def run_case(label, H, KH, D, lengths, ring, reps):
    dev = torch.device("cuda", 0)
    plan = hand_plan(lengths)
    (work,) = st.work_order(plan, 0)
    seq, pos, real = st.shard_index(work.lengths, work.d, work.ring_pos)
    g = torch.Generator(device="cpu").manual_seed(11)
    full = [[torch.randn(s, h, D, generator=g) for h in (H, KH, KH, H)] for s in lengths]
    rows = lambda j: torch.stack([full[k][j][p] if r else torch.zeros(full[0][j].shape[1:])
                                  for k, p, r in zip(seq.tolist(), pos.tolist(), real.tolist())])
    q, k, v, w = (rows(j).to(dev, torch.bfloat16) for j in range(4))
    for t in (q, k, v):
        t.requires_grad_()
    o = st.ring_attention(q, k, v, work, ring)
    (o.float() * w.float()).sum().backward()
    worst = {"o": 0.0, "dq": 0.0, "dk": 0.0, "dv": 0.0}
    sdpa_worst = dict(worst)
    scale_ref = dict(worst)
    for n, (fq, fk, fv, fw) in enumerate(full):
        mine = (seq == n) & real
        r_ = pos[mine]
        m_ = mine.to(dev)
        ref = []
        for dt in (torch.float32, torch.bfloat16):
            a, b, c = (t.to(dev, dt).requires_grad_() for t in (fq, fk, fv))
            ro = sdpa_seq(a, b, c)
            (ro.float() * fw.to(dev)).sum().backward()
            ref.append((ro.detach().float(), a.grad.float(), b.grad.float(), c.grad.float()))
        (f32, b16) = ref
        got = (o.detach().float()[m_], q.grad.float()[m_], k.grad.float()[m_], v.grad.float()[m_])
        rd = r_.to(dev)
        for key, x, y, z in zip(worst, got, f32, b16):
            worst[key] = max(worst[key], (x - y[rd]).abs().max().item())
            sdpa_worst[key] = max(sdpa_worst[key], (z[rd] - y[rd]).abs().max().item())
            scale_ref[key] = max(scale_ref[key], y.abs().max().item())
    ok = all(worst[key] <= max(2 * sdpa_worst[key], scale_ref[key] / 128) and math.isfinite(worst[key])
             for key in worst)
    # time fwd+bwd: sluice.torch on the packed shard vs SDPA one call per sequence
    qd, kd, vd = (t.detach().clone().requires_grad_() for t in (q, k, v))
    go = torch.randn_like(q)

    def sl():
        out = st.ring_attention(qd, kd, vd, work, ring)
        out.backward(go)

    seqs = [[t.to(dev, torch.bfloat16).requires_grad_() for t in f[:3]] for f in full]
    gos = [torch.randn(s, H, D, device=dev, dtype=torch.bfloat16) for s in lengths]

    def sd(backend):
        def f():
            for (a, b, c), gg in zip(seqs, gos):
                sdpa_seq(a, b, c, backend).backward(gg)
        return f

    def fwd_only(fn):
        with torch.no_grad():
            return fn()

    flops_fwd = sum(4 * s * s / 2 * D * H for s in lengths)  # causal: half
    t_sl = timed(sl, reps)
    t_sl_f = timed(lambda: fwd_only(lambda: st.ring_attention(qd, kd, vd, work, ring)), reps)
    out = {"case": label, "heads": H, "kv_heads": KH, "head_dim": D, "lengths": lengths, "ok": ok,
           "worst_abs_err": worst, "sdpa_bf16_worst_abs_err": sdpa_worst, "ref_max_abs": scale_ref,
           "sluice_fwd_ms": t_sl_f, "sluice_fwdbwd_ms": t_sl}
    from torch.nn.attention import SDPBackend
    for name, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
        try:
            out["sdpa_%s_fwd_ms" % name] = timed(lambda: fwd_only(lambda: [sdpa_seq(a, b, c, be) for a, b, c in seqs]), reps)
            out["sdpa_%s_fwdbwd_ms" % name] = timed(sd(be), reps)
        except RuntimeError as e:
            out["sdpa_%s" % name] = "unavailable: %s" % str(e).splitlines()[0]
    out["tflops_fwd"] = {k.replace("_fwd_ms", ""): flops_fwd / (v * 1e9) for k, v in out.items()
                         if k.endswith("_fwd_ms")}
    out["tflops_fwdbwd"] = {k.replace("_fwdbwd_ms", ""): 3.5 * flops_fwd / (v * 1e9) for k, v in out.items()
                            if k.endswith("_fwdbwd_ms")}
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    if not torch.cuda.is_available():
        print("torch_gpu: no CUDA device", file=sys.stderr)
        return 2
    torch.cuda.set_device(0)
    ring = st.Ring(0, 1, device=torch.device("cuda", 0), nccl_id=st.Ring.make_nccl_id())
    print(json.dumps({"card": torch.cuda.get_device_name(0), "torch": torch.__version__,
                      "cudnn": torch.backends.cudnn.version()}), flush=True)
    rows, ok = [], True
    for c in CASES:
        r = run_case(*c, ring, a.reps)
        ok &= r["ok"]
        print(json.dumps(r), flush=True)
        rows.append(r)
    ring.close()
    print("| case | ok | worst err o/dq/dk/dv (sluice) | same, SDPA bf16 | fwd TFLOP/s sluice / flash / cudnn "
          "| fwd+bwd TFLOP/s sluice / flash / cudnn |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        e = "/".join("%.3g" % r["worst_abs_err"][k] for k in ("o", "dq", "dk", "dv"))
        s = "/".join("%.3g" % r["sdpa_bf16_worst_abs_err"][k] for k in ("o", "dq", "dk", "dv"))
        tf = " / ".join("%.0f" % r["tflops_fwd"].get(k, float("nan")) for k in ("sluice", "sdpa_flash", "sdpa_cudnn"))
        tb = " / ".join("%.0f" % r["tflops_fwdbwd"].get(k, float("nan")) for k in ("sluice", "sdpa_flash", "sdpa_cudnn"))
        print("| %s | %s | %s | %s | %s | %s |" % (r["case"], r["ok"], e, s, tf, tb))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
