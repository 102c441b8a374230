"""The pure plan helpers (sluice.plan, sluice.megatron, sluice.verl) on
hand-written plans and on plans the real `sluice plan` command makes."""

import copy
import json
import os
import tempfile
import unittest

import sluice
from support import cli_csv, cli_plan, lengths, need


def hand_plan():
    """4 ranks, caller ids 10..13 not equal to positions. Slot 0: ids 12 and
    10 on ring [2, 0]; id 11 on rank 1; rank 3 idles. Slot 1: id 13 on ring
    [3, 1, 0, 2]."""
    return {
        "format": "sluice.plan/1",
        "policy": "hand",
        "profile": "gpt-7b-flexsp",
        "ranks": 4,
        "ranks_per_node": 4,
        "cap_tokens": 100000,
        "sequences": [
            {"id": 10, "length": 101},
            {"id": 11, "length": 700},
            {"id": 12, "length": 5001},
            {"id": 13, "length": 9},
        ],
        "slots": [
            {"groups": [
                {"ranks": [2, 0], "sequences": [{"id": 12}, {"id": 10, "offload": 0.25}]},
                {"ranks": [1], "sequences": [{"id": 11}]},
            ]},
            {"groups": [{"ranks": [3, 1, 0, 2], "sequences": [{"id": 13}]}]},
        ],
        "predicted": {"step_ms": 12.5, "ideal_ms": 10.0, "per_rank_ms": [1, 2, 3, 4]},
    }


def dp_plan():
    """3 ranks, groups of one rank only (plain data parallelism)."""
    return {
        "format": "sluice.plan/1",
        "policy": "hand",
        "profile": "gpt-7b-flexsp",
        "ranks": 3,
        "ranks_per_node": 8,
        "cap_tokens": 100000,
        "sequences": [{"id": i, "length": 100 * (i + 1)} for i in range(7)],
        "slots": [
            {"groups": [
                {"ranks": [0], "sequences": [{"id": 5}, {"id": 3}]},
                {"ranks": [2], "sequences": [{"id": 6}]},
            ]},
            {"groups": [
                {"ranks": [2], "sequences": [{"id": 0}, {"id": 2}]},
                {"ranks": [1], "sequences": [{"id": 4}, {"id": 1}]},
                {"ranks": [0], "sequences": []},
            ]},
        ],
    }


class PaddingTest(unittest.TestCase):
    def test_padded_length_by_hand(self):
        # p = s for d == 1, else ceil(s / 2d) * 2d (cost-model.md)
        cases = [
            (1000, 1, 1000), (1, 1, 1), (1000, 8, 1008), (16, 8, 16), (17, 8, 32),
            (1, 2, 4), (4, 2, 4), (5, 2, 8), (5001, 2, 5004), (9, 4, 16), (190211, 32, 190272),
        ]
        for s, d, p in cases:
            self.assertEqual(sluice.padded_length(s, d), p, (s, d))
        with self.assertRaises(ValueError):
            sluice.padded_length(10, 0)

    def test_cumulative(self):
        self.assertEqual(sluice.cumulative([]), [0])
        self.assertEqual(sluice.cumulative([3, 4, 5]), [0, 3, 7, 12])


class PlanParseTest(unittest.TestCase):
    def test_hand_plan(self):
        p = sluice.as_plan(hand_plan())
        self.assertEqual(p.ranks, 4)
        self.assertEqual(p.sequences, [(10, 101), (11, 700), (12, 5001), (13, 9)])
        self.assertEqual(len(p.slots), 2)
        self.assertEqual([len(s) for s in p.slots], [2, 1])
        g = p.slots[0][0]
        self.assertEqual(g.ranks, (2, 0))
        self.assertEqual(g.ids, (12, 10))
        self.assertEqual(g.indices, (2, 0))
        self.assertEqual(g.lengths, (5001, 101))
        self.assertEqual(g.offload, (0.0, 0.25))
        self.assertEqual(g.padded_lengths, (5004, 104))
        self.assertEqual(g.position(0), 1)
        self.assertIs(p.group_of(3, 0), None)
        self.assertEqual(p.group_of(3, 1).ranks, (3, 1, 0, 2))
        self.assertEqual(p.step_ms, 12.5)
        self.assertEqual(p.index_of(13), 3)
        self.assertIsNone(p.job)

    def test_text_file_and_dict_give_the_same_plan(self):
        raw = hand_plan()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "plan.json")
            with open(path, "w") as f:
                json.dump(raw, f)
            for src in (raw, json.dumps(raw), json.dumps(raw).encode(), path, sluice.Plan(raw)):
                p = sluice.as_plan(src)
                self.assertEqual(p.raw, raw)
                self.assertEqual([g.ids for g in p.groups], [(12, 10), (11,), (13,)])
            self.assertEqual(sluice.load_plan(path).raw, raw)

    def bad(self, mutate, *words):
        raw = hand_plan()
        mutate(raw)
        with self.assertRaises(ValueError) as cm:
            sluice.Plan(raw)
        for w in words:
            self.assertIn(w, str(cm.exception))

    def test_structural_errors_name_the_field(self):
        self.bad(lambda r: r.pop("slots"), "plan.slots", "missing")
        self.bad(lambda r: r.update(format="sluice.plan/2"), "format", "sluice.plan/2")
        self.bad(lambda r: r.update(ranks="4"), "plan.ranks", "integer")
        self.bad(lambda r: r["sequences"][1].update(length=True), "sequences[1].length")
        self.bad(lambda r: r["sequences"][1].update(id=10), "sequences[1]", "id 10 repeats sequences[0]")
        self.bad(lambda r: r["slots"][1]["groups"][0]["sequences"][0].update(id=99),
                 "slots[1].groups[0].sequences[0]", "id 99 is not in the request")
        self.bad(lambda r: r["slots"][0]["groups"][1].update(ranks=[4]), "slots[0].groups[1].ranks", "4")
        self.bad(lambda r: r["slots"][0]["groups"][1].update(ranks=[]), "slots[0].groups[1].ranks", "empty")
        self.bad(lambda r: r["slots"][0]["groups"][0]["sequences"][1].update(offload="x"), "offload")
        self.bad(lambda r: r["slots"][0].pop("groups"), "slots[0].groups", "missing")


class MegatronTest(unittest.TestCase):
    def test_hand_plan(self):
        s = sluice.megatron_schedule(hand_plan(), strict=False)
        self.assertEqual(s.num_micro_batches, 2)
        self.assertEqual(
            s.sample_id_groups,
            [[[12, 10], [11], [12, 10], []], [[13], [13], [13], [13]]],
        )
        mb = s.micro_batches[0][2]
        self.assertEqual(mb.sample_indices, [2, 0])
        self.assertEqual(mb.seq_lengths, [5001, 101])
        self.assertEqual(mb.padded_lengths, [5004, 104])
        self.assertEqual(mb.cp_sizes, [2, 2])
        self.assertEqual(mb.local_cp_size, 2)
        self.assertEqual(mb.cp_group, [2, 0])
        self.assertEqual(mb.cp_rank, 0)
        self.assertEqual(s.micro_batches[0][0].cp_rank, 1)
        self.assertEqual(mb.cu_seqlens, [0, 5001, 5102])
        self.assertEqual(mb.cu_seqlens_padded, [0, 5004, 5108])
        self.assertEqual(mb.max_seqlen, 5004)
        self.assertEqual(mb.local_tokens, 2554)
        self.assertEqual(mb.offload, [0.0, 0.25])
        try:
            import torch  # noqa: F401  (packed_seq_params builds int32 tensors)
        except ImportError:
            return  # test_upstream (run with a torch python) covers the rest
        with self.assertRaises(ValueError) as cm:  # TE: local_cp_size > 1 needs cp_group
            mb.packed_seq_params()
        self.assertIn("local_cp_size must be == 1 if provided without cp_group", str(cm.exception))
        psp = mb.packed_seq_params(cp_group="group-of-2")
        self.assertEqual(psp["cp_group"], "group-of-2")
        self.assertEqual(psp["cu_seqlens_q_padded"].tolist(), [0, 5004, 5108])
        self.assertEqual(psp["cu_seqlens_kv"].tolist(), [0, 5001, 5102])
        self.assertEqual((psp["max_seqlen_q"], psp["local_cp_size"], psp["qkv_format"]), (5004, 2, "thd"))
        one = s.micro_batches[0][1]
        self.assertEqual((one.padded_lengths, one.local_cp_size, one.cu_seqlens_padded), ([700], 1, [0, 700]))
        idle = s.micro_batches[0][3]
        self.assertTrue(idle.idle)
        self.assertIsNone(idle.local_cp_size)
        self.assertEqual((idle.cu_seqlens, idle.cu_seqlens_padded, idle.max_seqlen), ([0], [0], 0))
        last = s.micro_batches[1][0]
        self.assertEqual((last.padded_lengths, last.cp_rank, last.local_cp_size, last.local_tokens), ([16], 2, 4, 4))
        self.assertEqual([m.micro_batch for m in s.for_rank(3)], [0, 1])
        self.assertEqual([m.micro_batch for m in s.for_rank(3, skip_idle=True)], [1])
        with self.assertRaises(ValueError):
            s.for_rank(4)

    def test_rank_in_two_groups_of_a_slot(self):
        raw = hand_plan()
        raw["slots"][0]["groups"][1]["ranks"] = [0]
        with self.assertRaises(ValueError) as cm:
            sluice.megatron_schedule(raw, strict=False)
        self.assertIn("rank 0 is in groups 0 and 1", str(cm.exception))


class VerlTest(unittest.TestCase):
    def test_dp_plan(self):
        b = sluice.verl_balance(dp_plan(), equal_size=False, same_micro_num_in_dp=False)
        self.assertEqual((b.dp_size, b.sp_size), (3, 1))
        self.assertEqual(b.partitions, [[3, 5], [1, 4], [0, 2, 6]])
        self.assertEqual(b.global_idx, [3, 5, 1, 4, 0, 2, 6])
        # rank 0: slot 0 runs ids 5, 3 (local 1, 0); its empty slot-1 group is no micro-batch
        self.assertEqual(b.micro_batches, [[[1, 0]], [[1, 0]], [[2], [0, 1]]])
        self.assertEqual(b.micro_batch_slots, [[0], [1], [0, 1]])
        self.assertEqual(b.micro_batches_global(2), [[6], [0, 2]])
        self.assertEqual(b.tokens, [1000, 700, 1100])
        self.assertEqual(b.partition_sizes, [2, 2, 3])
        self.assertFalse(b.equal_size)
        self.assertEqual(b.num_micro_batches, [1, 1, 2])
        rev = b.reverse_idx()
        self.assertEqual([b.global_idx[rev[i]] for i in range(7)], list(range(7)))

    def test_sp_blocks(self):
        raw = hand_plan()
        with self.assertRaises(ValueError) as cm:
            sluice.verl_balance(raw)  # group [2, 0] has 2 ranks
        self.assertIn("slot 0 group 0 runs on ranks [2, 0]", str(cm.exception))
        raw["slots"][0]["groups"] = [
            {"ranks": [1, 0], "sequences": [{"id": 12}, {"id": 10}]},
            {"ranks": [2, 3], "sequences": [{"id": 11}]},
        ]
        raw["slots"][1]["groups"] = [{"ranks": [3, 2], "sequences": [{"id": 13}]}]
        b = sluice.verl_balance(raw, sp_size=2, same_micro_num_in_dp=False)
        self.assertEqual(b.dp_size, 2)
        self.assertEqual(b.partitions, [[0, 2], [1, 3]])
        self.assertEqual(b.micro_batches, [[[1, 0]], [[0], [1]]])
        self.assertTrue(b.equal_size)
        raw["slots"][1]["groups"] = [{"ranks": [1, 2], "sequences": [{"id": 13}]}]
        with self.assertRaises(ValueError) as cm:
            sluice.verl_balance(raw, sp_size=2)
        self.assertIn("aligned block of 2 ranks", str(cm.exception))
        with self.assertRaises(ValueError):
            sluice.verl_balance(raw, sp_size=3)


class CliPlanTest(unittest.TestCase):
    """Plans from the real `sluice plan --format json`; the helpers' numbers
    are checked against the plan's own structure and against the CLI's CSV
    (tokens and tokens_per_rank come from the C cost model's padding)."""

    @classmethod
    def setUpClass(cls):
        need("SLUICE_CLI")
        cls.lens = lengths(7, 48, 200, 60000)
        cls.args = ["--ranks", 16, "--ranks-per-node", 8]

    def check_megatron(self, raw, csv_rows):
        p = sluice.Plan(raw)
        s = sluice.megatron_schedule(raw, strict=False)
        self.assertEqual(s.num_micro_batches, len(raw["slots"]))
        seen = []
        rows = {(int(r["slot"]), int(r["group"])): r for r in csv_rows}
        self.assertEqual(len(rows), len(p.groups))
        for g in p.groups:
            d = g.size
            for pos, r in enumerate(g.ranks):
                mb = s.micro_batches[g.slot][r]
                self.assertEqual(mb.sample_ids, list(g.ids))
                self.assertEqual(mb.cp_group, list(g.ranks))
                self.assertEqual(mb.cp_rank, pos)
                self.assertEqual(mb.local_cp_size, d)
                self.assertEqual(mb.cp_sizes, [d] * len(g.ids))
                self.assertEqual(mb.seq_lengths, [p.sequences[p.index_of(i)][1] for i in g.ids])
                for sl, pl in zip(mb.seq_lengths, mb.padded_lengths):
                    if d == 1:
                        self.assertEqual(pl, sl)
                    else:
                        self.assertEqual(pl % (2 * d), 0)
                        self.assertTrue(sl <= pl < sl + 2 * d)
                cu, cup = mb.cu_seqlens, mb.cu_seqlens_padded
                self.assertEqual(cu[0], 0)
                self.assertEqual([b - a for a, b in zip(cu, cu[1:])], mb.seq_lengths)
                self.assertEqual([b - a for a, b in zip(cup, cup[1:])], mb.padded_lengths)
                self.assertEqual(mb.max_seqlen, max(mb.padded_lengths))
                self.assertEqual(mb.local_tokens * d, cup[-1])
            row = rows[(g.slot, g.index)]
            self.assertEqual(int(row["nranks"]), d)
            self.assertEqual([int(x) for x in row["seq_ids"].split()], list(g.ids))
            mb = s.micro_batches[g.slot][g.ranks[0]]
            self.assertEqual(int(row["tokens"]), mb.cu_seqlens[-1])
            resident = sum((1 - f) * pl / d for f, pl in zip(mb.offload, mb.padded_lengths))
            self.assertAlmostEqual(float(row["tokens_per_rank"]), resident, delta=1e-3)
            self.assertLessEqual(resident, p.cap_tokens + 1e-6)
            seen.extend(g.ids)
        # every sequence in exactly one group of one slot
        self.assertEqual(sorted(seen), sorted(i for i, _ in p.sequences))
        # ranks outside every group of a slot are idle
        for j, slot in enumerate(p.slots):
            busy = {r for g in slot for r in g.ranks}
            for r in range(p.ranks):
                self.assertEqual(s.micro_batches[j][r].idle, r not in busy or not p.group_of(r, j).ids)

    def test_megatron_on_every_policy(self):
        policies = [
            ("sluice",), ("sluice-aligned",), ("static",), ("static", "--sp", 4), ("batch-adaptive",),
            ("megatron-hybrid-cp",),
        ]
        for pol in policies:
            with self.subTest(policy=pol):
                args = self.args + ["--policy"] + list(pol)
                raw = cli_plan(self.lens, *args)
                self.assertEqual(raw["policy"], pol[0])
                self.check_megatron(raw, cli_csv(self.lens, *args))

    def test_strict_megatron_takes_sluice_aligned_plans(self):
        # Megatron's rules (megatron_check): power-of-two aligned blocks in
        # ascending order, no rank idle in a slot. sluice-aligned plans keep
        # them on every shape, 12 ranks (blocks of 8 and 4) included; the
        # default policy's plan breaks them on 64 ranks.
        long_tail = lengths(5, 64, 1000, 200000)
        for lens, ranks, per_node in ((self.lens, 16, 8), (long_tail, 8, 8), (long_tail, 64, 8),
                                      (self.lens, 12, 4)):
            with self.subTest(ranks=ranks, n=len(lens)):
                args = ["--ranks", ranks, "--ranks-per-node", per_node]
                raw = cli_plan(lens, *(args + ["--policy", "sluice-aligned"]))
                self.assertEqual(raw["policy"], "sluice-aligned")
                sluice.megatron_check(raw)
                s = sluice.megatron_schedule(raw, tp_size=2, sequence_parallel=True)
                self.assertEqual(s.pad_multiple, ranks * 2 * 2)
                p = sluice.Plan(raw)
                seen = []
                for j in range(s.num_micro_batches):
                    for r in range(ranks):
                        mb = s.micro_batches[j][r]
                        self.assertFalse(mb.idle)
                        self.assertEqual(mb.cp_group, list(range(mb.cp_group[0], mb.cp_group[0] + mb.local_cp_size)))
                        self.assertEqual(mb.cp_group[0] % mb.local_cp_size, 0)
                        self.assertEqual(mb.cp_rank, r - mb.cp_group[0])
                        self.assertTrue(all(pl % s.pad_multiple == 0 for pl in mb.padded_lengths))
                        if mb.cp_rank == 0:
                            seen.extend(mb.sample_ids)
                self.assertEqual(sorted(seen), sorted(i for i, _ in p.sequences))
                if ranks == 64:
                    with self.assertRaises(ValueError) as cm:
                        sluice.megatron_check(cli_plan(lens, *(args + ["--policy", "sluice"])))
                    self.assertIn("sluice-aligned", str(cm.exception))

    def test_verl_on_static_plans(self):
        short = lengths(11, 160, 100, 3000)  # enough that no rank is left without a sequence
        for sp in (1, 2, 4):
            with self.subTest(sp=sp):
                raw = cli_plan(short, *(self.args + ["--policy", "static", "--sp", sp]))
                p = sluice.Plan(raw)
                self.assertTrue(all(g.size == sp for g in p.groups))
                b = sluice.verl_balance(raw, sp_size=sp, equal_size=False, same_micro_num_in_dp=False)
                self.assertEqual(b.dp_size, 16 // sp)
                self.assertEqual(sorted(b.global_idx), list(range(len(short))))
                for r in range(b.dp_size):
                    self.assertEqual(b.partitions[r], sorted(b.partitions[r]))
                    mbs = b.micro_batches_global(r)
                    self.assertEqual(sorted(i for mb in mbs for i in mb), b.partitions[r])
                    self.assertEqual(b.tokens[r], sum(short[i] for i in b.partitions[r]))
                    # micro-batches are the rank's groups, in slot order
                    want = [list(g.indices) for g in p.groups if g.ranks[0] // sp == r and g.ids]
                    self.assertEqual(mbs, want)
                    self.assertEqual(b.micro_batch_slots[r], sorted(b.micro_batch_slots[r]))
                self.assertEqual(sum(b.tokens), sum(short))

    def test_verl_refuses_variable_groups(self):
        raw = cli_plan(self.lens, *(self.args + ["--policy", "megatron-hybrid-cp"]))
        sizes = {g.size for g in sluice.Plan(raw).groups}
        self.assertGreater(len(sizes), 1, "this batch should need several CP sizes")
        with self.assertRaises(ValueError) as cm:
            sluice.verl_balance(raw)
        self.assertIn("a single rank", str(cm.exception))

    def test_helpers_do_not_modify_the_plan(self):
        raw = cli_plan(self.lens, *self.args)
        before = copy.deepcopy(raw)
        sluice.megatron_schedule(raw, strict=False)
        try:
            sluice.verl_balance(raw)
        except ValueError:
            pass
        self.assertEqual(raw, before)


if __name__ == "__main__":
    unittest.main()
