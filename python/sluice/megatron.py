"""A sluice plan in the form Megatron-LM's hybrid / dynamic context-parallel
schedule consumes.

Megatron-LM (megatron/core/pipeline_parallel/hybrid_cp_schedule.py and
megatron/core/datasets/data_schedule.py) runs a global batch as a list of
micro-batch groups with a barrier between them; in group j, DPxCP rank r
runs `sample_id_groups[j][r]` (a list of global sample ids), and a sample's
`local_cp_size` is the number of ranks that hold it in that group. The
samples of one rank and micro-batch are packed in `thd` format and described
by PackedSeqParams (megatron/core/packed_seq_params.py): `cu_seqlens_q/kv`
(cumulative real lengths, starting at 0), `cu_seqlens_q/kv_padded`
(cumulative padded lengths), `max_seqlen_q/kv` (the longest padded length),
`local_cp_size`.

A sluice plan maps onto this one to one: a slot is a micro-batch group (ranks
walk slots in order), a group of d ranks is a CP group of size d. Upstream
rules this module enforces (megatron_schedule(..., strict=True), the
default; Megatron-LM main, TransformerEngine wrapper in
megatron/core/extensions/transformer_engine.py):

* CP groups exist only for powers of two, as aligned blocks of consecutive
  DPxCP ranks (parallel_state.create_hybrid_dp_cp_groups: ranks[i:i+size]
  for size = 2, 4, ...); a plan group must be one such block (ring order
  free: the process group orders its ranks ascending, so cp_rank is the
  rank's place in the sorted block).
* Every sample is padded to a multiple of dp x cp x 2, times the
  tensor-parallel size with sequence parallelism (gpt_dataset.py's hybrid CP
  rule); cu_seqlens_q/kv are the padded cumulative lengths and, with the
  unpadded ones, 1-D int32 tensors (data_schedule.py asserts the dtype).
* local_cp_size > 1 needs its cp_group: TE's wrapper asserts "local_cp_size
  must be == 1 if provided without cp_group".
* No rank may idle in a slot: the hybrid schedule indexes each rank's sample
  list of the last group (sample_id_groups[-1][hdp_rank][-1]) and barriers
  every group, so an empty entry crashes it.

Plans of the `sluice-aligned` policy (planner/aligned.c) satisfy all of this.
Plans with free-size rings (3, 5, ... ranks, any order) cannot run on TE's
context parallelism; run them with sluice.torch.ring_attention instead
(strict=False gives the schedule in sluice's own layout: zigzag padding
ceil(s / 2d) * 2d, cp_rank the ring position, idle entries allowed).

Timing differs in one respect: Megatron barriers the whole DPxCP group after
each micro-batch group, while a plan's ranks only wait for the ranks of
their next group (cost-model.md: a group starts when all its ranks are
free). Running the micro-batches with Megatron's barriers is correct but can
be slower than `predicted.step_ms`; to match it, iterate `for_rank(r,
skip_idle=True)` and synchronise only within each CP group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from .plan import PlanLike, as_plan, cumulative, padded_length


@dataclass
class MicroBatch:
    """What one rank runs in one micro-batch (one slot of the plan)."""

    micro_batch: int
    rank: int
    sample_ids: List[int] = field(default_factory=list)  # caller ids, run order
    sample_indices: List[int] = field(default_factory=list)  # positions in the request
    seq_lengths: List[int] = field(default_factory=list)
    padded_lengths: List[int] = field(default_factory=list)
    cp_sizes: List[int] = field(default_factory=list)  # per sample: its group's size
    offload: List[float] = field(default_factory=list)
    local_cp_size: Optional[int] = None  # None: the rank idles in this slot
    cp_group: List[int] = field(default_factory=list)  # the group's ranks, ring order
    cp_rank: Optional[int] = None  # this rank's position in cp_group
    cu_seqlens: List[int] = field(default_factory=lambda: [0])
    cu_seqlens_padded: List[int] = field(default_factory=lambda: [0])
    max_seqlen: int = 0  # longest padded length (Megatron's max_seqlen)
    local_tokens: int = 0  # tokens this rank holds: sum(padded) / local_cp_size

    @property
    def idle(self) -> bool:
        return not self.sample_ids

    def packed_seq_params(self, cp_group: Any = None, device: Any = None) -> Dict[str, Any]:
        """The keyword arguments of Megatron's PackedSeqParams: cu_seqlens_q/kv
        (cumulative real lengths) and cu_seqlens_q/kv_padded as 1-D int32
        torch tensors on `device`, max_seqlen_q/kv, local_cp_size and
        cp_group. For local_cp_size > 1, cp_group (the process group of this
        micro-batch's cp_group ranks, e.g. Megatron's hybrid DPxCP group of
        that size) is required: TransformerEngine asserts "local_cp_size must
        be == 1 if provided without cp_group". Raises ValueError for an idle
        entry (Megatron runs no empty micro-batch)."""
        if self.idle:
            raise ValueError("micro-batch %d: rank %d idles; Megatron's hybrid schedule has no "
                             "empty micro-batch" % (self.micro_batch, self.rank))
        if self.local_cp_size != 1 and cp_group is None:
            raise ValueError(
                "micro-batch %d: rank %d: local_cp_size %d needs its cp_group (ranks %s); "
                "TransformerEngine asserts 'local_cp_size must be == 1 if provided without cp_group'"
                % (self.micro_batch, self.rank, self.local_cp_size, self.cp_group)
            )
        import torch

        def i32(v):
            return torch.tensor(v, dtype=torch.int32, device=device)

        return {
            "qkv_format": "thd",
            "cu_seqlens_q": i32(self.cu_seqlens),
            "cu_seqlens_kv": i32(self.cu_seqlens),
            "cu_seqlens_q_padded": i32(self.cu_seqlens_padded),
            "cu_seqlens_kv_padded": i32(self.cu_seqlens_padded),
            "max_seqlen_q": self.max_seqlen,
            "max_seqlen_kv": self.max_seqlen,
            "local_cp_size": self.local_cp_size,
            "cp_group": cp_group if self.local_cp_size != 1 else None,
        }


@dataclass
class MegatronSchedule:
    """`micro_batches[j][r]` is rank r's MicroBatch in micro-batch j;
    `sample_id_groups[j][r]` its sample ids (Megatron's layout)."""

    ranks: int
    num_micro_batches: int
    micro_batches: List[List[MicroBatch]]
    pad_multiple: int = 0  # 0: sluice's zigzag padding (strict=False)

    @property
    def sample_id_groups(self) -> List[List[List[int]]]:
        return [[list(mb.sample_ids) for mb in row] for row in self.micro_batches]

    def for_rank(self, rank: int, skip_idle: bool = False) -> List[MicroBatch]:
        """Rank `rank`'s micro-batches in order (optionally without idle ones)."""
        if not 0 <= rank < self.ranks:
            raise ValueError("rank %d is not in [0, %d)" % (rank, self.ranks))
        out = [row[rank] for row in self.micro_batches]
        return [mb for mb in out if not mb.idle] if skip_idle else out


def _is_pow2(n: int) -> bool:
    return n >= 1 and n & (n - 1) == 0


def megatron_check(plan: PlanLike) -> None:
    """Raises ValueError naming the first group or slot Megatron cannot run:
    a group that is not an aligned power-of-two block of consecutive ranks,
    or a slot where some rank idles. (See the module doc for the upstream
    rules.)"""
    p = as_plan(plan)
    for j, slot in enumerate(p.slots):
        busy = set()
        for g in slot:
            d, lo = g.size, min(g.ranks)
            if not _is_pow2(d):
                raise ValueError(
                    "plan: slot %d group %d has %d ranks %s; Megatron builds CP groups only "
                    "for powers of two (use policy sluice-aligned, or sluice.torch attention)"
                    % (j, g.index, d, list(g.ranks))
                )
            if lo % d != 0 or sorted(g.ranks) != list(range(lo, lo + d)):
                raise ValueError(
                    "plan: slot %d group %d runs on ranks %s; Megatron's CP groups of %d are "
                    "aligned blocks k*%d .. k*%d+%d of consecutive ranks"
                    % (j, g.index, list(g.ranks), d, d, d, d - 1)
                )
            busy.update(g.ranks)
        idle = [r for r in range(p.ranks) if r not in busy]
        if idle:
            raise ValueError(
                "plan: slot %d leaves ranks %s idle; Megatron's hybrid schedule crashes on an "
                "empty sample list (use policy sluice-aligned)" % (j, idle)
            )


def megatron_schedule(plan: PlanLike, tp_size: int = 1, sequence_parallel: bool = False,
                      strict: bool = True) -> MegatronSchedule:
    """Turns a plan (Plan, dict, JSON text or file) into per micro-batch,
    per rank sample lists with their CP sizes, padded lengths and
    cu_seqlens / cu_seqlens_padded.

    strict (default): the plan must be one Megatron can run (megatron_check)
    and samples are padded to Megatron's multiple, dp x cp x 2 (x tp_size
    with sequence_parallel), where dp x cp is the plan's ranks. strict=False:
    sluice's own layout for sluice.torch (zigzag padding, ring order, idle
    entries). Raises ValueError when a rank appears in two groups of one
    slot, or (strict) the plan breaks an upstream rule."""
    p = as_plan(plan)
    tp = int(tp_size)
    if tp < 1:
        raise ValueError("tp_size %d: must be >= 1" % tp)
    multiple = 0
    if strict:
        megatron_check(p)
        multiple = p.ranks * 2 * (tp if sequence_parallel else 1)
    rows: List[List[MicroBatch]] = []
    for j, slot in enumerate(p.slots):
        row = [MicroBatch(micro_batch=j, rank=r) for r in range(p.ranks)]
        owner: Dict[int, int] = {}
        for g in slot:
            d = g.size
            if strict:
                padded = [-(-s // multiple) * multiple for s in g.lengths]
                order = sorted(g.ranks)  # the process group's rank order
            else:
                padded = [padded_length(s, d) for s in g.lengths]
                order = list(g.ranks)
            for r in g.ranks:
                if r in owner:
                    raise ValueError(
                        "plan: slot %d: rank %d is in groups %d and %d" % (j, r, owner[r], g.index)
                    )
                owner[r] = g.index
                row[r] = MicroBatch(
                    micro_batch=j,
                    rank=r,
                    sample_ids=list(g.ids),
                    sample_indices=list(g.indices),
                    seq_lengths=list(g.lengths),
                    padded_lengths=list(padded),
                    cp_sizes=[d] * len(g.ids),
                    offload=list(g.offload),
                    local_cp_size=d,
                    cp_group=order,
                    cp_rank=order.index(r),
                    cu_seqlens=cumulative(g.lengths),
                    cu_seqlens_padded=cumulative(padded),
                    max_seqlen=max(padded) if padded else 0,
                    local_tokens=sum(padded) // d,
                )
        rows.append(row)
    return MegatronSchedule(ranks=p.ranks, num_micro_batches=len(rows), micro_batches=rows,
                            pad_multiple=multiple)
