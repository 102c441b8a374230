"""Each upstream rule the framework helpers follow (Megatron-LM,
TransformerEngine, verl, Hugging Face transformers; see the docstrings of
python/sluice/megatron.py, verl.py, hf.py), pinned on hand-written plans.
Needs torch (Megatron's tensors); run through ctest (with_torch.sh)."""

import unittest

import torch

import sluice


def plan(ranks, slots, lengths):
    return {
        "format": "sluice.plan/1", "policy": "hand", "profile": "p", "ranks": ranks,
        "ranks_per_node": ranks, "cap_tokens": 1 << 30,
        "sequences": [{"id": i, "length": s} for i, s in enumerate(lengths)],
        "slots": [{"groups": [{"ranks": r, "sequences": [{"id": i} for i in ids]} for r, ids in slot]}
                  for slot in slots],
    }


# 4 DPxCP ranks: slot 0 a CP-2 block [1, 0] (ring order reversed) and two
# single ranks; slot 1 one CP-4 group.
GOOD = plan(4, [[([1, 0], [0, 1]), ([2], [2]), ([3], [3])], [([0, 1, 2, 3], [4])]],
            [100, 37, 50, 8, 1000])


class MegatronRules(unittest.TestCase):
    def test_cu_seqlens_are_1d_int32_tensors_of_padded_lengths(self):
        s = sluice.megatron_schedule(GOOD)
        mb = s.micro_batches[0][1]
        psp = mb.packed_seq_params(cp_group=object())
        for key in ("cu_seqlens_q", "cu_seqlens_kv", "cu_seqlens_q_padded", "cu_seqlens_kv_padded"):
            self.assertEqual(psp[key].dtype, torch.int32, key)
            self.assertEqual(psp[key].dim(), 1, key)
        # dp x cp x 2 = 8: 100 -> 104, 37 -> 40
        self.assertEqual(psp["cu_seqlens_q_padded"].tolist(), [0, 104, 144])
        self.assertEqual(psp["cu_seqlens_q"].tolist(), [0, 100, 137])
        self.assertEqual(psp["max_seqlen_q"], 104)
        self.assertEqual(mb.local_tokens, 72)

    def test_padding_with_sequence_parallelism_includes_tp(self):
        s = sluice.megatron_schedule(GOOD, tp_size=2, sequence_parallel=True)
        self.assertEqual(s.pad_multiple, 16)  # dp x cp x 2 x tp
        self.assertEqual(s.micro_batches[0][0].padded_lengths, [112, 48])
        s = sluice.megatron_schedule(GOOD, tp_size=2, sequence_parallel=False)
        self.assertEqual(s.pad_multiple, 8)
        for row in s.micro_batches:
            for mb in row:
                self.assertTrue(all(p % 8 == 0 for p in mb.padded_lengths))

    def test_local_cp_size_above_one_needs_a_cp_group(self):
        s = sluice.megatron_schedule(GOOD)
        with self.assertRaises(ValueError) as cm:
            s.micro_batches[0][0].packed_seq_params()
        self.assertIn("local_cp_size must be == 1 if provided without cp_group", str(cm.exception))
        single = s.micro_batches[0][2].packed_seq_params()  # CP off: 1 and no group is allowed
        self.assertEqual((single["local_cp_size"], single["cp_group"]), (1, None))

    def test_cp_rank_follows_the_process_group_order(self):
        s = sluice.megatron_schedule(GOOD)
        self.assertEqual([s.micro_batches[0][r].cp_rank for r in (0, 1)], [0, 1])
        self.assertEqual(s.micro_batches[0][1].cp_group, [0, 1])

    def test_groups_must_be_power_of_two_aligned_blocks(self):
        three = plan(4, [[([0, 1, 2], [0]), ([3], [1])]], [10, 10])
        with self.assertRaises(ValueError) as cm:
            sluice.megatron_schedule(three)
        self.assertIn("powers of two", str(cm.exception))
        unaligned = plan(4, [[([1, 2], [0]), ([0], [1]), ([3], [2])]], [10, 10, 10])
        with self.assertRaises(ValueError) as cm:
            sluice.megatron_schedule(unaligned)
        self.assertIn("aligned blocks", str(cm.exception))
        gap = plan(4, [[([0, 2], [0]), ([1], [1]), ([3], [2])]], [10, 10, 10])
        with self.assertRaises(ValueError):
            sluice.megatron_schedule(gap)
        # sluice's own layout (for sluice.torch) takes them
        self.assertEqual(sluice.megatron_schedule(three, strict=False).micro_batches[0][0].local_cp_size, 3)

    def test_no_rank_may_idle_in_a_slot(self):
        idle = plan(4, [[([0, 1], [0]), ([2], [1])]], [10, 10])
        with self.assertRaises(ValueError) as cm:
            sluice.megatron_schedule(idle)
        self.assertIn("leaves ranks [3] idle", str(cm.exception))
        with self.assertRaises(ValueError):
            sluice.megatron_schedule(idle, strict=False).micro_batches[0][3].packed_seq_params()


class VerlRules(unittest.TestCase):
    def test_unequal_partitions_are_refused(self):
        p = plan(2, [[([0], [0, 1]), ([1], [2])]], [10, 10, 10])
        with self.assertRaises(ValueError) as cm:
            sluice.verl_balance(p)
        self.assertIn("equal chunks", str(cm.exception))
        b = sluice.verl_balance(p, equal_size=False)
        self.assertEqual(b.partition_sizes, [2, 1])

    def test_empty_partition_is_refused(self):
        p = plan(3, [[([0], [0, 1]), ([1], [2, 3])]], [10, 10, 10, 10])
        with self.assertRaises(ValueError) as cm:
            sluice.verl_balance(p, equal_size=False)
        self.assertIn("rank 2 gets no sequence", str(cm.exception))

    def test_every_rank_gets_the_max_micro_batch_count(self):
        # rank 0: two groups (2 micro-batches); rank 1: one group of two sequences
        p = plan(2, [[([0], [0]), ([1], [2, 3])], [([0], [1])]], [10, 10, 10, 10])
        b = sluice.verl_balance(p)
        self.assertEqual(b.num_micro_batches, [2, 2])
        self.assertEqual(b.num_micro_batches_dp, 2)
        self.assertEqual(b.micro_batches_global(1), [[2], [3]])
        self.assertEqual(b.micro_batch_slots[1], [0, 0])
        short = plan(2, [[([0], [0]), ([1], [2])], [([0], [1])]], [10, 10, 10])
        with self.assertRaises(ValueError) as cm:
            sluice.verl_balance(short, equal_size=False)
        self.assertIn("rank 1 has 1 sequences but verl runs 2 micro-batches", str(cm.exception))


class HfRules(unittest.TestCase):
    def test_flattening_batch(self):
        b = sluice.flattening_batch([3, 1, 2], as_tensors=True)
        self.assertEqual(b["cu_seq_lens_q"].dtype, torch.int32)
        self.assertEqual(b["cu_seq_lens_k"].tolist(), [0, 3, 4, 6])
        self.assertEqual((b["max_length_q"], b["max_length_k"]), (3, 3))
        self.assertEqual(b["position_ids"].tolist(), [[0, 1, 2, 0, 0, 1]])
        with self.assertRaises(ValueError):
            sluice.flattening_batch([3, 0])


class Packaging(unittest.TestCase):
    def test_version_is_the_headers(self):
        import os
        import re

        header = os.path.join(os.path.dirname(__file__), "..", "..", "include", "sluice", "sluice.h")
        with open(header) as f:
            want = re.search(r'#define SLUICE_VERSION "([0-9.]+)"', f.read()).group(1)
        self.assertEqual(sluice.__version__, want)


if __name__ == "__main__":
    unittest.main()
