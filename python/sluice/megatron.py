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
walk slots in order), a group of d ranks is a CP group of size d, and the
padded length is the cost model's zigzag padding (ceil(s / 2d) * 2d for
d > 1; s for d == 1), so each rank of the ring holds padded / d tokens of
each sample. Unlike Megatron's own scheduler, a plan may leave a rank idle in
a slot; that rank gets an empty entry (no samples, local_cp_size None).

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

    def packed_seq_params(self) -> Dict[str, Any]:
        """The keyword arguments of Megatron's PackedSeqParams, as Python
        ints and int lists (wrap the lists in torch int32 tensors on the
        device and add cp_group to build the real thing)."""
        return {
            "qkv_format": "thd",
            "cu_seqlens_q": list(self.cu_seqlens),
            "cu_seqlens_kv": list(self.cu_seqlens),
            "cu_seqlens_q_padded": list(self.cu_seqlens_padded),
            "cu_seqlens_kv_padded": list(self.cu_seqlens_padded),
            "max_seqlen_q": self.max_seqlen,
            "max_seqlen_kv": self.max_seqlen,
            "local_cp_size": self.local_cp_size,
        }


@dataclass
class MegatronSchedule:
    """`micro_batches[j][r]` is rank r's MicroBatch in micro-batch j;
    `sample_id_groups[j][r]` its sample ids (Megatron's layout)."""

    ranks: int
    num_micro_batches: int
    micro_batches: List[List[MicroBatch]]

    @property
    def sample_id_groups(self) -> List[List[List[int]]]:
        return [[list(mb.sample_ids) for mb in row] for row in self.micro_batches]

    def for_rank(self, rank: int, skip_idle: bool = False) -> List[MicroBatch]:
        """Rank `rank`'s micro-batches in order (optionally without idle ones)."""
        if not 0 <= rank < self.ranks:
            raise ValueError("rank %d is not in [0, %d)" % (rank, self.ranks))
        out = [row[rank] for row in self.micro_batches]
        return [mb for mb in out if not mb.idle] if skip_idle else out


def megatron_schedule(plan: PlanLike) -> MegatronSchedule:
    """Turns a plan (Plan, dict, JSON text or file) into per micro-batch,
    per rank sample lists with their CP sizes, zigzag padded lengths and
    cu_seqlens / cu_seqlens_padded. Raises ValueError when a rank appears in
    two groups of one slot (such a plan cannot run)."""
    p = as_plan(plan)
    rows: List[List[MicroBatch]] = []
    for j, slot in enumerate(p.slots):
        row = [MicroBatch(micro_batch=j, rank=r) for r in range(p.ranks)]
        owner: Dict[int, int] = {}
        for g in slot:
            d = g.size
            padded = [padded_length(s, d) for s in g.lengths]
            for pos, r in enumerate(g.ranks):
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
                    cp_group=list(g.ranks),
                    cp_rank=pos,
                    cu_seqlens=cumulative(g.lengths),
                    cu_seqlens_padded=cumulative(padded),
                    max_seqlen=max(padded) if padded else 0,
                    local_tokens=sum(padded) // d,
                )
        rows.append(row)
    return MegatronSchedule(ranks=p.ranks, num_micro_batches=len(rows), micro_batches=rows)
