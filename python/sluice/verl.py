"""A sluice plan in the form verl's batch balancing consumes.

verl (verl/trainer/ppo/ray_trainer.py `_balance_batch`, and
verl/utils/seqlen_balancing.py) balances a global batch over data-parallel
ranks with `get_seqlen_balanced_partitions`: k lists of batch indices, each
sorted; the batch is reordered by their concatenation (`global_idx`) and the
dispatcher hands rank r the r-th chunk. Each rank then splits its chunk into
micro-batches (`rearrange_micro_batches`), lists of indices into its local
chunk.

Here the partitions come from the plan instead: a data-parallel rank gets the
sequences of the groups it runs, and its micro-batches are those groups in
slot order. verl gives every rank of a (Ulysses) sequence-parallel group the
same data, so a plan maps onto verl only when every group is exactly one
aligned block of `sp_size` ranks (ranks k*sp .. k*sp+sp-1, any ring order);
with sp_size = 1 (plain data parallelism) every group must be a single rank.
Plans made with `policy="static"` and `sp=sp_size` have that shape; plans of
the other policies (variable group sizes) are refused with the offending
group named.

Upstream rules enforced (verl main):

* `_balance_batch` reorders the batch by `global_idx` and the dispatcher then
  hands every data-parallel rank an EQUAL chunk: with equal_size=True (the
  default) unequal partitions are refused, since verl would silently give
  ranks other sequences than the plan says (pass equal_size=False only with
  a dispatch that splits by `partition_sizes`).
* `get_seqlen_balanced_partitions` fails on an empty partition ("partition
  empty" / fewer items than partitions): every rank must get a sequence.
* `rearrange_micro_batches` all-reduces the micro-batch count with MAX over
  the data-parallel group (same_micro_num_in_dp) and then splits each rank's
  sequences into that many non-empty micro-batches: here every rank gets
  `num_micro_batches_dp` micro-batches (a rank with fewer groups splits its
  largest ones), refused when a rank has fewer sequences than that count.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

from .plan import PlanLike, as_plan


@dataclass
class VerlBalance:
    """`partitions[r]`: batch indices (positions in the request) of
    data-parallel rank r, sorted as verl sorts them; `global_idx`: their
    concatenation, for `batch.reorder`; `micro_batches[r]`: rank r's
    micro-batches as lists of indices into its partition (verl's
    micro_bsz_idx), in slot order, `micro_batch_slots[r]` their slots;
    `tokens[r]`: the real tokens of rank r. `equal_size` tells whether every
    partition has the same count (what verl's equal-chunk dispatch needs;
    otherwise split the reordered batch by `partition_sizes`)."""

    dp_size: int
    sp_size: int
    partitions: List[List[int]]
    micro_batches: List[List[List[int]]]
    micro_batch_slots: List[List[int]]
    tokens: List[int]

    @property
    def global_idx(self) -> List[int]:
        return [i for part in self.partitions for i in part]

    @property
    def partition_sizes(self) -> List[int]:
        return [len(p) for p in self.partitions]

    @property
    def equal_size(self) -> bool:
        return len(set(self.partition_sizes)) <= 1

    @property
    def num_micro_batches(self) -> List[int]:
        return [len(m) for m in self.micro_batches]

    @property
    def num_micro_batches_dp(self) -> int:
        """The count verl uses on every rank (the MAX over the group)."""
        return max(self.num_micro_batches) if self.micro_batches else 0

    def micro_batches_global(self, dp_rank: int) -> List[List[int]]:
        """Rank dp_rank's micro-batches as batch indices."""
        part = self.partitions[dp_rank]
        return [[part[k] for k in mb] for mb in self.micro_batches[dp_rank]]

    def reverse_idx(self) -> List[int]:
        """Inverse of global_idx (verl's get_reverse_idx): position of batch
        index i in the reordered batch."""
        g = self.global_idx
        rev = [0] * len(g)
        for pos, i in enumerate(g):
            rev[i] = pos
        return rev


def _split_to(mbs: List[List[int]], count: int) -> List[List[int]]:
    """Splits the largest micro-batches (by count, first first) in two until
    there are `count` of them; the caller guarantees enough items."""
    out = [list(m) for m in mbs]
    while len(out) < count:
        k = max(range(len(out)), key=lambda i: (len(out[i]), -i))
        m = out[k]
        half = (len(m) + 1) // 2
        out[k:k + 1] = [m[:half], m[half:]]
    return out


def verl_balance(plan: PlanLike, sp_size: int = 1, equal_size: bool = True,
                 same_micro_num_in_dp: bool = True) -> VerlBalance:
    """Turns a plan (Plan, dict, JSON text or file) into verl-style
    partitions and micro-batches over ranks / sp_size data-parallel ranks.
    Raises ValueError when sp_size does not divide the plan's ranks, a group
    is not one aligned block of sp_size ranks, a partition is empty, the
    partitions differ in size (equal_size) or a rank has fewer sequences
    than the data-parallel group's micro-batch count (same_micro_num_in_dp)."""
    p = as_plan(plan)
    sp = int(sp_size)
    if sp < 1 or p.ranks % sp != 0:
        raise ValueError("sp_size %d: must be >= 1 and divide the plan's %d ranks" % (sp, p.ranks))
    dp = p.ranks // sp
    groups_of: List[List] = [[] for _ in range(dp)]
    for g in p.groups:
        block = g.ranks[0] // sp
        if sorted(g.ranks) != list(range(block * sp, block * sp + sp)):
            if sp == 1:
                need = "a single rank (sp_size 1: plain data parallelism)"
            else:
                need = "one aligned block of %d ranks (k*%d .. k*%d+%d)" % (sp, sp, sp, sp - 1)
            raise ValueError(
                "plan: slot %d group %d runs on ranks %s; verl needs every group to be %s"
                % (g.slot, g.index, list(g.ranks), need)
            )
        if g.indices:  # a group without sequences is no micro-batch
            groups_of[block].append(g)
    partitions, micro, slots, tokens = [], [], [], []
    for r in range(dp):
        part = sorted(i for g in groups_of[r] for i in g.indices)
        local = {i: k for k, i in enumerate(part)}
        partitions.append(part)
        micro.append([[local[i] for i in g.indices] for g in groups_of[r]])
        slots.append([g.slot for g in groups_of[r]])
        tokens.append(sum(s for g in groups_of[r] for s in g.lengths))
    for r, part in enumerate(partitions):
        if not part:
            raise ValueError(
                "plan: data-parallel rank %d gets no sequence; verl's balanced partitions "
                "must not be empty (partition sizes %s)" % (r, [len(x) for x in partitions])
            )
    if equal_size and len({len(x) for x in partitions}) > 1:
        raise ValueError(
            "plan: partition sizes %s differ; verl dispatches equal chunks of the reordered "
            "batch, so ranks would get other sequences than the plan says (make the plan "
            "with equal counts per rank, or pass equal_size=False and split by "
            "partition_sizes)" % [len(x) for x in partitions]
        )
    if same_micro_num_in_dp:
        count = max(len(m) for m in micro)
        for r in range(dp):
            if len(partitions[r]) < count:
                raise ValueError(
                    "plan: data-parallel rank %d has %d sequences but verl runs %d micro-batches "
                    "on every rank (the MAX over the group), each non-empty"
                    % (r, len(partitions[r]), count)
                )
            if len(micro[r]) < count:
                split = _split_to(micro[r], count)
                # a split micro-batch keeps its group's slot
                slots[r] = [s_ for m, s_ in zip(micro[r], slots[r])
                            for _ in range(sum(1 for x in split if x and set(x) <= set(m)))]
                micro[r] = split
    return VerlBalance(
        dp_size=dp,
        sp_size=sp,
        partitions=partitions,
        micro_batches=micro,
        micro_batch_slots=slots,
        tokens=tokens,
    )
