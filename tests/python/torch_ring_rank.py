"""One rank of test_torch's ring check: runs every group of a hand-written
plan that this rank belongs to through sluice.torch.ring_attention (forward
and backward) and compares its shard with plain fp64 PyTorch attention of the
whole sequences (sluice.torch.reference_attention, autograd for the
gradients). Exits 0 when every value matches within TOL, 1 otherwise
(printing the worst error). argv: rank world run_dir plan.json"""

import os
import sys

import torch

import sluice
import sluice.torch as st

TOL = 1e-9  # fp64 ring vs fp64 reference: only summation order differs
H, KH, D = 4, 2, 8


def seq_tensors(sid, s):
    g = torch.Generator().manual_seed(1000 + sid)
    q = torch.randn(s, H, D, generator=g, dtype=torch.float64)
    k = torch.randn(s, KH, D, generator=g, dtype=torch.float64)
    v = torch.randn(s, KH, D, generator=g, dtype=torch.float64)
    w = torch.randn(s, H, D, generator=g, dtype=torch.float64)  # loss weights
    return q, k, v, w


def main():
    rank, world, run_dir, plan_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    plan = sluice.load_plan(plan_path)
    worst = 0.0
    with st.Ring(rank, world, run_dir=run_dir, timeout_ms=60000) as ring:
        ring.set_epoch(1)
        for work in st.work_order(plan, rank):
            seq_idx, pos, real = st.shard_index(work.lengths, work.d, work.ring_pos)
            full = [seq_tensors(i, s) for i, s in zip(work.ids, work.lengths)]
            # the shard: zigzag rows of each sequence, padding rows arbitrary
            def take(j):
                rows = []
                for k_, p_ in zip(seq_idx.tolist(), pos.tolist()):
                    t = full[k_][j]
                    rows.append(t[p_] if p_ < t.shape[0] else torch.full_like(t[0], 0.5))
                return torch.stack(rows)
            q, k, v, w = (take(j) for j in range(4))
            # SLUICE_TEST_PERTURB: an error the check must catch (test_torch)
            q[0, 0, 0] += float(os.environ.get("SLUICE_TEST_PERTURB", "0"))
            for t in (q, k, v):
                t.requires_grad_()
            o = st.ring_attention(q, k, v, work, ring)
            (o * w).sum().backward()
            for n, (fq, fk, fv, fw) in enumerate(full):
                fq, fk, fv = (t.clone().requires_grad_() for t in (fq, fk, fv))
                ro = st.reference_attention(fq, fk, fv)
                (ro * fw).sum().backward()
                mine = (seq_idx == n) & real
                rows = pos[mine]
                for got, want in ((o, ro), (q.grad, fq.grad), (k.grad, fk.grad), (v.grad, fv.grad)):
                    worst = max(worst, (got[mine] - want[rows]).abs().max().item())
            pad = ~real
            if pad.any():
                for t in (o, q.grad, k.grad, v.grad):
                    worst = max(worst, t[pad].abs().max().item())
            print("rank %d slot %d ring %s: ok so far, worst %.3g" % (rank, work.slot, list(work.ranks), worst))
    print("rank %d worst %.3g" % (rank, worst))
    sys.exit(0 if worst < TOL else 1)


main()
