"""sluice.plan/1 plans as Python objects (docs/python.md,
docs/plan-format.md). Pure Python: no library, no daemon.

A plan is an ordered list of slots; each slot holds disjoint groups; a group
runs some sequences together on a ring of ranks, each sequence sharded in
zigzag order over the group (2d chunks, ring position i holds chunks i and
2d-1-i of the padded sequence).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

PLAN_FORMAT = "sluice.plan/1"


def padded_length(length: int, d: int) -> int:
    """The zigzag padded length of a sequence of `length` tokens on `d` ranks
    (cost-model.md): `length` when d == 1, else ceil(length / 2d) * 2d."""
    length, d = int(length), int(d)
    if d < 1:
        raise ValueError("group size %d: must be >= 1" % d)
    if d == 1:
        return length
    return -(-length // (2 * d)) * (2 * d)


def cumulative(values: Sequence[int]) -> List[int]:
    """[0, v0, v0+v1, ...]: the cu_seqlens form of a list of lengths."""
    out = [0]
    for v in values:
        out.append(out[-1] + int(v))
    return out


@dataclass(frozen=True)
class Group:
    """One group of one slot: `ranks` in ring order run the sequences
    `ids` (caller ids) together, in that order. `indices` are the same
    sequences' positions in the plan's request (`Plan.sequences`)."""

    slot: int
    index: int
    ranks: Tuple[int, ...]
    ids: Tuple[int, ...]
    indices: Tuple[int, ...]
    lengths: Tuple[int, ...]
    offload: Tuple[float, ...]

    @property
    def size(self) -> int:
        """Group size d (the sequences' context/sequence-parallel degree)."""
        return len(self.ranks)

    @property
    def padded_lengths(self) -> Tuple[int, ...]:
        return tuple(padded_length(s, self.size) for s in self.lengths)

    def position(self, rank: int) -> int:
        """Ring position of `rank` in this group (its zigzag chunk pair)."""
        return self.ranks.index(rank)


def _field(obj: Any, key: str, where: str, kind: Union[type, Tuple[type, ...]]) -> Any:
    if not isinstance(obj, dict):
        raise ValueError("plan: %s: expected an object" % where)
    if key not in obj:
        raise ValueError("plan: %s.%s: missing" % (where, key))
    val = obj[key]
    ok = isinstance(val, kind) and not (isinstance(val, bool) and bool not in _kinds(kind))
    if not ok:
        raise ValueError(
            "plan: %s.%s: expected %s, got %r" % (where, key, _kind_name(kind), val)
        )
    return val


def _kinds(kind: Union[type, Tuple[type, ...]]) -> Tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind: Union[type, Tuple[type, ...]]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", list: "an array", dict: "an object"}
    return " or ".join(names.get(k, k.__name__) for k in _kinds(kind))


class Plan:
    """A parsed sluice.plan/1 plan.

    Attributes: `raw` (the JSON dict, unchanged), `policy`, `profile`,
    `ranks`, `ranks_per_node`, `cap_tokens`, `sequences` (list of (id,
    length) in request order), `slots` (list of lists of Group), `groups`
    (all groups, slot by slot), `step_ms` / `ideal_ms` (the reference
    model's prediction, None when absent), and for plans from the daemon
    `job`, `step` and `request_id` (None otherwise).

    Raises ValueError naming the field for structural errors: a missing or
    mistyped field, a group naming an id the request lacks, duplicate ids,
    a rank outside [0, ranks). It does not check the planning rules (every
    sequence placed once, disjoint groups, memory); `sluice score` does.
    """

    def __init__(
        self,
        raw: Dict[str, Any],
        job: Optional[str] = None,
        step: Optional[int] = None,
        request_id: Optional[int] = None,
    ):
        fmt = _field(raw, "format", "plan", str)
        if fmt != PLAN_FORMAT:
            raise ValueError("plan: format is %r, expected %r" % (fmt, PLAN_FORMAT))
        self.raw = raw
        self.job = job
        self.step = step
        self.request_id = request_id
        self.policy = _field(raw, "policy", "plan", str)
        self.profile = _field(raw, "profile", "plan", str)
        self.ranks = _field(raw, "ranks", "plan", int)
        self.ranks_per_node = _field(raw, "ranks_per_node", "plan", int)
        self.cap_tokens = _field(raw, "cap_tokens", "plan", int)
        if self.ranks < 1:
            raise ValueError("plan: ranks is %d, must be >= 1" % self.ranks)

        self.sequences: List[Tuple[int, int]] = []
        self._index_of: Dict[int, int] = {}
        for i, s in enumerate(_field(raw, "sequences", "plan", list)):
            where = "sequences[%d]" % i
            sid = _field(s, "id", where, int)
            length = _field(s, "length", where, int)
            if sid in self._index_of:
                raise ValueError(
                    "plan: %s: id %d repeats sequences[%d]" % (where, sid, self._index_of[sid])
                )
            self._index_of[sid] = i
            self.sequences.append((sid, length))

        self.slots: List[List[Group]] = []
        self.groups: List[Group] = []
        for si, slot in enumerate(_field(raw, "slots", "plan", list)):
            row = []
            for gi, g in enumerate(_field(slot, "groups", "slots[%d]" % si, list)):
                where = "slots[%d].groups[%d]" % (si, gi)
                ranks = _field(g, "ranks", where, list)
                for r in ranks:
                    if isinstance(r, bool) or not isinstance(r, int) or not 0 <= r < self.ranks:
                        raise ValueError(
                            "plan: %s.ranks: %r is not a rank in [0, %d)" % (where, r, self.ranks)
                        )
                if not ranks:
                    raise ValueError("plan: %s.ranks: empty" % where)
                ids, idx, lengths, offload = [], [], [], []
                for k, item in enumerate(_field(g, "sequences", where, list)):
                    iw = "%s.sequences[%d]" % (where, k)
                    sid = _field(item, "id", iw, int)
                    if sid not in self._index_of:
                        raise ValueError("plan: %s: id %d is not in the request" % (iw, sid))
                    f = item.get("offload", 0.0)
                    if isinstance(f, bool) or not isinstance(f, (int, float)):
                        raise ValueError("plan: %s.offload: expected a number, got %r" % (iw, f))
                    ids.append(sid)
                    idx.append(self._index_of[sid])
                    lengths.append(self.sequences[self._index_of[sid]][1])
                    offload.append(float(f))
                grp = Group(si, gi, tuple(ranks), tuple(ids), tuple(idx), tuple(lengths), tuple(offload))
                row.append(grp)
                self.groups.append(grp)
            self.slots.append(row)

        pred = raw.get("predicted") or {}
        self.step_ms: Optional[float] = pred.get("step_ms")
        self.ideal_ms: Optional[float] = pred.get("ideal_ms")

    def index_of(self, sequence_id: int) -> int:
        """Position of a caller id in the request (KeyError if absent)."""
        return self._index_of[sequence_id]

    def group_of(self, rank: int, slot: int) -> Optional[Group]:
        """The group `rank` belongs to in `slot`, or None when it idles there."""
        for g in self.slots[slot]:
            if rank in g.ranks:
                return g
        return None

    def to_json(self, indent: Optional[int] = None) -> str:
        return json.dumps(self.raw, indent=indent)

    def __repr__(self) -> str:
        extra = ""
        if self.job is not None:
            extra = " job=%r step=%s" % (self.job, self.step)
        return "<sluice.Plan policy=%s ranks=%d sequences=%d slots=%d groups=%d step_ms=%s%s>" % (
            self.policy,
            self.ranks,
            len(self.sequences),
            len(self.slots),
            len(self.groups),
            self.step_ms,
            extra,
        )


PlanLike = Union[Plan, Dict[str, Any], str, bytes, os.PathLike]


def as_plan(plan: PlanLike) -> Plan:
    """Accepts a Plan, a plan dict, JSON text or a path to a JSON file."""
    if isinstance(plan, Plan):
        return plan
    if isinstance(plan, dict):
        return Plan(plan)
    if isinstance(plan, bytes):
        plan = plan.decode("utf-8")
    if isinstance(plan, str) and plan.lstrip().startswith("{"):
        return Plan(json.loads(plan))
    return load_plan(plan)


def load_plan(path: Union[str, os.PathLike]) -> Plan:
    """Reads a plan written by `sluice plan --format json` (or '-' for stdin)."""
    if str(path) == "-":
        import sys

        return Plan(json.load(sys.stdin))
    with open(path, "r", encoding="utf-8") as f:
        return Plan(json.load(f))
