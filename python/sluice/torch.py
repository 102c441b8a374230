"""sluice.torch: one rank's part of a plan's ring attention as a PyTorch
autograd function.

A plan's group of d ranks runs its sequences packed (variable length, causal,
grouped-query attention), each sequence zigzag-sharded over the ring: padded
to ceil(s / 2d) * 2d tokens (s when d == 1), cut into 2d chunks, ring
position i holding chunks i and 2d-1-i (docs/plan-format.md). Every rank of
the group calls ``ring_attention(q, k, v, work, ring)`` with the q, k, v of
its own local tokens (``[ntok, heads, head_dim]`` / ``[ntok, kv_heads,
head_dim]``) and gets the attention output of those tokens; the backward
runs the ring backward and returns dq, dk, dv of the local tokens.

The computation is sluice's, through libsluice_ring (include/sluice/ring.h):

* CUDA tensors: the kernels library's bf16 ring over one NCCL communicator,
  on PyTorch's current stream (``Ring(..., device=cuda_device,
  nccl_id=...)``); inputs are cast to bf16, dq/dk/dv come back in fp32 and
  are cast to the inputs' dtype.
* CPU tensors: the worker's fp64 CPU backend, K/V moving over the worker's
  ZeroMQ mesh (``Ring(rank, world, run_dir=...)``); inputs are computed in
  fp64. This is the path CI runs.

Work orders come from a plan (``work_order(plan, rank)``), whether the plan
came from sluiced (``sluice.Client.plan``) or a JSON file. A rank runs its
groups in slot order; ranks of one group must make the same calls in the
same order (every layer's forward, then the backward), which a training loop
over the rank's own work order does by construction. Ranks never wait for
ranks outside their group, so ranks with different numbers of micro-batches
do not deadlock; only the gradient all-reduce at the end of the step is
collective.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import torch

from . import _ring
from .plan import PlanLike, as_plan, padded_length

__all__ = [
    "Ring",
    "GroupWork",
    "work_order",
    "shard_index",
    "ring_attention",
    "RingAttention",
    "reference_attention",
]


class Ring:
    """This process's ring engine (one per process, for the whole run).

    CPU: ``Ring(rank, world_size, run_dir=DIR)``: binds ipc://DIR/w<rank>.ipc
    and waits for all ranks (DIR: the same directory, at most 80 characters,
    on every rank). CUDA: ``Ring(rank, world_size, device=torch.device("cuda",
    i), nccl_id=ID)`` with ID = ``Ring.make_nccl_id()`` on one rank, shared
    with the others (e.g. ``torch.distributed.broadcast_object_list``).
    """

    def __init__(
        self,
        rank: int,
        world_size: int,
        run_dir: Optional[str] = None,
        device=None,
        nccl_id: Optional[bytes] = None,
        timeout_ms: int = 120000,
    ):
        self._lib = _ring.load()
        self.rank, self.world_size = int(rank), int(world_size)
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self._h = ctypes.c_void_p()
        if self.device.type == "cuda":
            if nccl_id is None:
                raise ValueError("Ring on %s: needs nccl_id (Ring.make_nccl_id() on one rank)" % self.device)
            idx = self.device.index if self.device.index is not None else torch.cuda.current_device()
            rc = self._lib.sl_ring_new_cuda(self.rank, self.world_size, idx, bytes(nccl_id), ctypes.byref(self._h))
        elif self.device.type == "cpu":
            if not run_dir:
                raise ValueError("Ring on cpu: needs run_dir (a directory shared by every rank)")
            rc = self._lib.sl_ring_new_cpu(
                str(run_dir).encode(), self.rank, self.world_size, int(timeout_ms), ctypes.byref(self._h)
            )
        else:
            raise ValueError("Ring: device %s is neither cpu nor cuda" % self.device)
        _ring.check(self._lib, rc)

    @staticmethod
    def make_nccl_id() -> bytes:
        lib = _ring.load()
        n = lib.sl_ring_nccl_id_size()
        if n == 0:
            raise RuntimeError("libsluice_ring was built without CUDA")
        buf = ctypes.create_string_buffer(n)
        _ring.check(lib, lib.sl_ring_nccl_id(buf))
        return buf.raw

    @staticmethod
    def have_cuda() -> bool:
        return bool(_ring.load().sl_ring_have_cuda())

    def set_epoch(self, step: int) -> None:
        """Tags the following messages with the training step (CPU engine)."""
        self._lib.sl_ring_set_epoch(self._handle(), int(step))

    def _handle(self):
        if not self._h:
            raise RuntimeError("Ring is closed")
        return self._h

    def close(self) -> None:
        if self._h:
            self._lib.sl_ring_free(ctypes.byref(self._h))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


@dataclass
class GroupWork:
    """One group execution of one rank: `ranks` (ring order), this rank's
    `ring_pos`, and the sequences in packing order (`ids`, `indices` into the
    request, real `lengths`)."""

    slot: int
    ranks: Tuple[int, ...]
    ring_pos: int
    ids: Tuple[int, ...]
    indices: Tuple[int, ...]
    lengths: Tuple[int, ...]
    _c: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def d(self) -> int:
        return len(self.ranks)

    @property
    def padded_lengths(self) -> List[int]:
        return [padded_length(s, self.d) for s in self.lengths]

    @property
    def local_tokens(self) -> int:
        return sum(self.padded_lengths) // self.d

    def c_group(self, heads: int, kv_heads: int, head_dim: int, scale: float) -> _ring.RingGroup:
        key = (heads, kv_heads, head_dim, scale)
        g = self._c.get(key)
        if g is None:
            ring = (ctypes.c_int32 * self.d)(*self.ranks)
            lens = (ctypes.c_int64 * max(1, len(self.lengths)))(*self.lengths)
            g = _ring.RingGroup(
                slot=self.slot, d=self.d, ring_pos=self.ring_pos, ring=ring, nseqs=len(self.lengths),
                lengths=lens, heads=heads, kv_heads=kv_heads, head_dim=head_dim, scale=scale,
            )
            g._keep = (ring, lens)  # the struct borrows these arrays
            self._c[key] = g
        return g


def work_order(plan: PlanLike, rank: int) -> List[GroupWork]:
    """Rank `rank`'s group executions in slot order (groups without
    sequences and slots where the rank idles are left out)."""
    p = as_plan(plan)
    if not 0 <= rank < p.ranks:
        raise ValueError("rank %d is not in the plan's [0, %d)" % (rank, p.ranks))
    out = []
    for slot in p.slots:
        for g in slot:
            if rank in g.ranks and g.ids:
                out.append(GroupWork(g.slot, tuple(g.ranks), g.position(rank), tuple(g.ids),
                                     tuple(g.indices), tuple(g.lengths)))
    return out


def shard_index(lengths: Sequence[int], d: int, pos: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each local token of ring position `pos` of a d-rank group running
    `lengths` packed: the sequence's index in `lengths`, its global position
    in that sequence, and whether it is a real token (False: zigzag padding).
    Three int64/int64/bool tensors of local_tokens entries."""
    seq, posn = [], []
    for k, s in enumerate(lengths):
        p = padded_length(s, d)
        if d == 1:
            idx = list(range(p))
        else:
            c = p // (2 * d)
            idx = list(range(pos * c, pos * c + c)) + list(range((2 * d - 1 - pos) * c, (2 * d - pos) * c))
        seq.extend([k] * len(idx))
        posn.extend(idx)
    seq_t = torch.tensor(seq, dtype=torch.int64)
    pos_t = torch.tensor(posn, dtype=torch.int64)
    real = pos_t < torch.tensor([lengths[k] for k in seq], dtype=torch.int64) if seq else torch.zeros(0, dtype=torch.bool)
    return seq_t, pos_t, real


def _ptr(t: Optional[torch.Tensor]):
    return ctypes.c_void_p(t.data_ptr()) if t is not None else None


class RingAttention(torch.autograd.Function):
    """autograd.Function behind ring_attention (see the module doc)."""

    @staticmethod
    def forward(ctx, q, k, v, work: GroupWork, ring: Ring, scale: float):
        ntok, heads, head_dim = q.shape
        kv_heads = k.shape[1]
        g = work.c_group(heads, kv_heads, head_dim, scale)
        lib = ring._lib
        n = ctypes.c_int64()
        _ring.check(lib, lib.sl_ring_layout(ring._handle(), ctypes.byref(g), ctypes.byref(n)))
        if n.value != ntok or k.shape != (ntok, kv_heads, head_dim) or v.shape != k.shape:
            raise ValueError(
                "ring_attention: slot %d: q %s, k %s, v %s; this rank's shard has %d tokens "
                "(q [ntok, heads, head_dim], k and v [ntok, kv_heads, head_dim])"
                % (work.slot, tuple(q.shape), tuple(k.shape), tuple(v.shape), n.value)
            )
        cuda = q.is_cuda
        dt = torch.bfloat16 if cuda else torch.float64
        qc, kc, vc = (t.detach().to(dt).contiguous() for t in (q, k, v))
        o = torch.empty_like(qc)
        lse = torch.empty((ntok, heads), dtype=torch.float32 if cuda else torch.float64, device=q.device)
        stream = ctypes.c_void_p(torch.cuda.current_stream(q.device).cuda_stream) if cuda else None
        _ring.check(lib, lib.sl_ring_forward(ring._handle(), ctypes.byref(g), _ptr(qc), _ptr(kc), _ptr(vc),
                                             _ptr(o), _ptr(lse), stream))
        ctx.save_for_backward(qc, kc, vc, o, lse)
        ctx.work, ctx.ring, ctx.scale, ctx.dtypes = work, ring, scale, (q.dtype, k.dtype, v.dtype)
        return o.to(q.dtype)

    @staticmethod
    def backward(ctx, do):
        qc, kc, vc, o, lse = ctx.saved_tensors
        ring, lib = ctx.ring, ctx.ring._lib
        ntok, heads, head_dim = qc.shape
        g = ctx.work.c_group(heads, kc.shape[1], head_dim, ctx.scale)
        cuda = qc.is_cuda
        gdt = torch.float32 if cuda else torch.float64
        doc = do.detach().to(qc.dtype).contiguous()
        dq = torch.empty(qc.shape, dtype=gdt, device=qc.device)
        dk = torch.empty(kc.shape, dtype=gdt, device=qc.device)
        dv = torch.empty(kc.shape, dtype=gdt, device=qc.device)
        stream = ctypes.c_void_p(torch.cuda.current_stream(qc.device).cuda_stream) if cuda else None
        _ring.check(lib, lib.sl_ring_backward(ring._handle(), ctypes.byref(g), _ptr(qc), _ptr(kc), _ptr(vc),
                                              _ptr(o), _ptr(lse), _ptr(doc), _ptr(dq), _ptr(dk), _ptr(dv),
                                              stream))
        tq, tk, tv = ctx.dtypes
        return dq.to(tq), dk.to(tk), dv.to(tv), None, None, None


def ring_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, work: GroupWork, ring: Ring,
                   scale: Optional[float] = None) -> torch.Tensor:
    """Causal varlen GQA ring attention of this rank's local tokens of `work`
    (q [ntok, H, D], k/v [ntok, KH, D], H a multiple of KH); returns o
    [ntok, H, D] in q's dtype. Padding tokens give o = 0 and no gradient.
    scale defaults to 1/sqrt(D). Collective over work.ranks."""
    if scale is None:
        scale = 1.0 / math.sqrt(q.shape[-1])
    return RingAttention.apply(q, k, v, work, ring, float(scale))


def reference_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float] = None) -> torch.Tensor:
    """Plain causal GQA attention of ONE whole sequence (q [s, H, D], k/v
    [s, KH, D]) in PyTorch: the reference sluice.torch is checked against."""
    s, h, dim = q.shape
    rep = h // k.shape[1]
    kk = k.repeat_interleave(rep, dim=1)
    vv = v.repeat_interleave(rep, dim=1)
    if scale is None:
        scale = 1.0 / math.sqrt(dim)
    att = torch.einsum("qhd,khd->hqk", q, kk) * scale
    mask = torch.ones(s, s, dtype=torch.bool, device=q.device).tril()
    att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    return torch.einsum("hqk,khd->qhd", att, vv)
