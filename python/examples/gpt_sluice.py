"""A small GPT trained with sluice: every step asks sluiced for a plan, every
rank runs its own work order (its sequences, zigzag shards, rings and number
of micro-batches) with sluice.torch.ring_attention, and gradients are
all-reduced as usual. Then the same model is trained without sluice (one
process, plain PyTorch attention per whole sequence) and the two are
compared step by step: loss and every gradient.

    python3 gpt_sluice.py --endpoint ipc:///tmp/d/sluiced.sock --world 4 --steps 3 \\
        --trace data/traces/wikipedia-flexsp.txt.gz --policies sluice,static:2,static:4

It launches --world rank processes itself (torch.distributed with gloo on
CPU, or NCCL with --device cuda, one GPU per rank) and prints one JSON line
per step. Exit status 0 when every step matched within --tol (relative to
the largest value; the default 1e-9 suits fp64 on CPU), 1 otherwise, 2 for
bad arguments.

Sequence lengths come from a real trace, scaled down (--scale, --max-len) so
the example runs on CPU in seconds. Token ids are pseudo-random per (step,
sequence id). The model is fp64 on CPU (bf16 ring attention on CUDA).
"""

import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

import sluice
import sluice.torch as st


class Block(nn.Module):
    def __init__(self, dim, heads, kv_heads):
        super().__init__()
        self.heads, self.kv_heads, self.hd = heads, kv_heads, dim // heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, (heads + 2 * kv_heads) * self.hd)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x, attend):
        n = x.shape[0]
        qkv = self.qkv(self.ln1(x))
        q, k, v = qkv.split([self.heads * self.hd, self.kv_heads * self.hd, self.kv_heads * self.hd], dim=-1)
        a = attend(q.view(n, self.heads, self.hd), k.view(n, self.kv_heads, self.hd),
                   v.view(n, self.kv_heads, self.hd))
        x = x + self.proj(a.reshape(n, -1))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    """Token and learned position embeddings, pre-LN blocks with grouped-query
    attention, tied output head. Works on a packed 1-D row of tokens; the
    attention function decides which tokens see which."""

    def __init__(self, vocab, dim, layers, heads, kv_heads, max_len):
        super().__init__()
        self.tok = nn.Embedding(vocab, dim)
        self.pos = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, kv_heads) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)

    def forward(self, tokens, positions, attend):
        x = self.tok(tokens) + self.pos(positions)
        for b in self.blocks:
            x = b(x, attend)
        return self.ln(x) @ self.tok.weight.t()


def make_model(a, device, dtype):
    torch.manual_seed(a.seed)
    m = GPT(a.vocab, a.dim, a.layers, a.heads, a.kv_heads, a.max_len)
    return m.to(device=device, dtype=dtype)


def trace_lengths(a):
    out = []
    with gzip.open(a.trace, "rt") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            out.append(min(a.max_len, max(2, int(line) // a.scale)))
            if len(out) == a.steps * a.batch:
                return out
    raise SystemExit("%s: fewer than %d lengths" % (a.trace, a.steps * a.batch))


def step_batch(a, lens, step):
    """(lengths, token tensors) of step `step`; ids are 0..batch-1."""
    ls = lens[step * a.batch:(step + 1) * a.batch]
    toks = []
    for i, s in enumerate(ls):
        g = torch.Generator().manual_seed(a.seed * 1000003 + step * 1009 + i)
        toks.append(torch.randint(0, a.vocab, (s,), generator=g))
    return ls, toks


def policy_args(spec):
    name, _, sp = spec.partition(":")
    return {"policy": name, "sp": int(sp) if sp else 0}


def rank_main(a):
    rank, world = a.rank, a.world
    dev = torch.device(a.device if a.device == "cpu" else "cuda:%d" % (rank % torch.cuda.device_count()))
    dtype = torch.float64 if dev.type == "cpu" else torch.float32
    dist.init_process_group("gloo" if dev.type == "cpu" else "nccl",
                            init_method="file://" + os.path.join(a.run_dir, "store"), rank=rank, world_size=world)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
        box = [st.Ring.make_nccl_id() if rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        ring = st.Ring(rank, world, device=dev, nccl_id=box[0])
    else:
        ring = st.Ring(rank, world, run_dir=a.run_dir)
    model = make_model(a, dev, dtype)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr)
    lens = trace_lengths(a)
    client = sluice.Client(a.endpoint) if rank == 0 else None
    policies = a.policies.split(",")
    for step in range(a.steps):
        ls, toks = step_batch(a, lens, step)
        box = [None]
        if rank == 0:
            plan = client.plan(ls, step=step, job=a.job, ranks=world, dispatch=False,
                               **policy_args(policies[step % len(policies)]))
            box = [plan.to_json()]
        dist.broadcast_object_list(box, src=0)
        plan = sluice.as_plan(box[0])
        ring.set_epoch(step)
        targets_total = sum(s - 1 for s in ls)
        opt.zero_grad()
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        work = st.work_order(plan, rank)
        for w in work:  # this rank's micro-batches, its own count
            seq, pos, real = st.shard_index(w.lengths, w.d, w.ring_pos)
            full = [toks[i] for i in w.indices]
            tok = torch.tensor([full[k][p] if r else 0 for k, p, r in zip(seq.tolist(), pos.tolist(), real.tolist())])
            tgt = torch.tensor([full[k][p + 1] if r and p + 1 < len(full[k]) else -100
                                for k, p, r in zip(seq.tolist(), pos.tolist(), real.tolist())])
            logits = model(tok.to(dev), pos.clamp(max=a.max_len - 1).to(dev),
                           lambda q, k, v, w=w: st.ring_attention(q, k, v, w, ring))
            loss = F.cross_entropy(logits.double(), tgt.to(dev), ignore_index=-100, reduction="sum") / targets_total
            loss.backward()
            loss_sum += loss.detach()
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in model.parameters()]
        for g in grads:
            dist.all_reduce(g)
        dist.all_reduce(loss_sum)
        if rank == 0:
            torch.save({"loss": loss_sum.item(), "grads": [g.detach().cpu().double() for g in grads],
                        "micro_batches": None, "policy": plan.policy,
                        "groups": [list(g.ranks) for g in plan.groups]},
                       os.path.join(a.run_dir, "step%d.pt" % step))
        counts = torch.tensor([len(work)], device=dev)  # NCCL gathers device tensors only
        allc = [torch.zeros(1, dtype=torch.int64, device=dev) for _ in range(world)]
        dist.all_gather(allc, counts)
        if rank == 0:
            with open(os.path.join(a.run_dir, "counts%d.json" % step), "w") as f:
                json.dump([int(c.item()) for c in allc], f)
        for p, g in zip(model.parameters(), grads):
            p.grad = g
        opt.step()
    if client:
        client.close()
    ring.close()
    dist.barrier()
    dist.destroy_process_group()
    return 0


def reference(a):
    """The same training without sluice: one process, each whole sequence
    through plain PyTorch attention. Yields (loss, grads) per step."""
    model = make_model(a, torch.device("cpu"), torch.float64)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr)
    lens = trace_lengths(a)
    for step in range(a.steps):
        ls, toks = step_batch(a, lens, step)
        targets_total = sum(s - 1 for s in ls)
        opt.zero_grad()
        total = 0.0
        for t in toks:
            s = len(t)
            logits = model(t, torch.arange(s), st.reference_attention)
            loss = F.cross_entropy(logits[:-1], t[1:], reduction="sum") / targets_total
            loss.backward()
            total += loss.item()
        yield total, [p.grad.detach().clone() for p in model.parameters()]
        opt.step()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--endpoint", required=True, help="sluiced endpoint")
    ap.add_argument("--world", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8, help="sequences per step")
    ap.add_argument("--trace", required=True)
    ap.add_argument("--scale", type=int, default=32, help="divide trace lengths by this")
    ap.add_argument("--max-len", type=int, default=96)
    ap.add_argument("--policies", default="sluice,static:2,static:4",
                    help="policy[:sp] per step, cycled")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--tol", type=float, default=1e-9)
    ap.add_argument("--vocab", type=int, default=64)
    ap.add_argument("--dim", type=int, default=32)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--job", default="gpt-example")
    ap.add_argument("--rank", type=int, default=-1, help=argparse.SUPPRESS)
    ap.add_argument("--run-dir", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.world < 1 or a.steps < 1 or a.batch < 1 or a.heads % a.kv_heads or a.dim % a.heads:
        ap.error("need world, steps, batch >= 1, heads a multiple of kv-heads, dim of heads")
    if a.rank >= 0:
        return rank_main(a)

    run_dir = tempfile.mkdtemp(prefix="sl-gpt-", dir="/tmp")  # short: ipc paths
    procs = []
    for r in range(a.world):
        argv = [sys.executable, os.path.abspath(__file__)] + sys.argv[1:] + ["--rank", str(r), "--run-dir", run_dir]
        procs.append(subprocess.Popen(argv))
    rcs = [p.wait() for p in procs]
    if any(rcs):
        print("rank exit statuses %s" % rcs, file=sys.stderr)
        return 1
    ok = True
    for step, (loss, grads) in enumerate(reference(a)):
        got = torch.load(os.path.join(run_dir, "step%d.pt" % step))
        with open(os.path.join(run_dir, "counts%d.json" % step)) as f:
            counts = json.load(f)
        scale = max(g.abs().max().item() for g in grads)
        gerr = max((x - y).abs().max().item() for x, y in zip(got["grads"], grads)) / scale
        lerr = abs(got["loss"] - loss) / abs(loss)
        good = gerr <= a.tol and lerr <= a.tol and math.isfinite(got["loss"])
        ok &= good
        print(json.dumps({"step": step, "policy": got["policy"], "groups": got["groups"],
                          "micro_batches_per_rank": counts, "loss": got["loss"], "loss_ref": loss,
                          "loss_rel_err": lerr, "grad_rel_err": gerr, "ok": good}), flush=True)
    for name in os.listdir(run_dir):
        os.unlink(os.path.join(run_dir, name))
    os.rmdir(run_dir)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
