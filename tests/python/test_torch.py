"""sluice.torch (libsluice_ring's CPU engine: the worker's fp64 backend over
its ZeroMQ mesh) against plain fp64 PyTorch attention, and the example
trainer against the same model trained without sluice. Real processes, a
real sluiced; run through ctest (with_torch.sh picks a python with torch)."""

import os
import subprocess
import sys
import tempfile
import unittest

from support import Daemon, child_env, need

HERE = os.path.dirname(os.path.abspath(__file__))

# A hand plan over 4 ranks: a 3-rank ring in a non-sorted order (zigzag with
# padding: 37 -> 42, 5 -> 6), a 1-rank group with two sequences, a 2-rank
# ring in the next slot, rank 2 idle there; GQA in the rank script (4 heads
# on 2 KV heads).
PLAN = """{"format":"sluice.plan/1","policy":"hand","profile":"h100-sxm-llama8b","ranks":4,
 "ranks_per_node":4,"cap_tokens":100000,
 "sequences":[{"id":0,"length":37},{"id":1,"length":12},{"id":2,"length":5},{"id":3,"length":20},
              {"id":4,"length":9},{"id":5,"length":16}],
 "slots":[{"groups":[{"ranks":[2,0,3],"sequences":[{"id":0},{"id":2}]},
                     {"ranks":[1],"sequences":[{"id":1},{"id":4}]}]},
          {"groups":[{"ranks":[1,3],"sequences":[{"id":3},{"id":5}]}]}]}"""


def run_ranks(world, plan_text):
    d = tempfile.mkdtemp(prefix="sl-ring-", dir="/tmp")
    path = os.path.join(d, "plan.json")
    with open(path, "w") as f:
        f.write(plan_text)
    procs = [
        subprocess.Popen([sys.executable, os.path.join(HERE, "torch_ring_rank.py"), str(r), str(world), d, path],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=child_env())
        for r in range(world)
    ]
    outs = [p.communicate(timeout=240)[0].decode() for p in procs]
    return [p.returncode for p in procs], outs


class RingAttentionTest(unittest.TestCase):
    def test_forward_backward_match_fp64_reference(self):
        need("SLUICE_RING_LIB")
        rcs, outs = run_ranks(4, PLAN)
        self.assertEqual(rcs, [0, 0, 0, 0], "\n".join(outs))
        for r, out in enumerate(outs):
            self.assertIn("rank %d worst" % r, out)

    def test_the_check_can_fail(self):
        # The comparison must notice an error of 1e-6 in one input value
        # (torch_ring_rank.py perturbs its q after building the reference).
        need("SLUICE_RING_LIB")
        os.environ["SLUICE_TEST_PERTURB"] = "1e-6"
        try:
            rcs, outs = run_ranks(4, PLAN)
        finally:
            del os.environ["SLUICE_TEST_PERTURB"]
        self.assertTrue(any(rc == 1 for rc in rcs), "\n".join(outs))


class ExampleTrainerTest(unittest.TestCase):
    def test_gpt_with_sluice_matches_plain_training(self):
        need("SLUICE_RING_LIB")
        d = Daemon()
        try:
            cmd = [sys.executable, os.path.join(need("SLUICE_EXAMPLES"), "gpt_sluice.py"),
                   "--endpoint", d.endpoint, "--world", "4", "--steps", "3",
                   "--trace", need("SLUICE_TRACE"), "--policies", "sluice,static:2,static:4",
                   "--tol", "1e-9"]
            res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 env=child_env(), timeout=280)
        finally:
            d.stop()
        out = res.stdout.decode()
        self.assertEqual(res.returncode, 0, out)
        lines = [l for l in out.splitlines() if l.startswith("{")]
        self.assertEqual(len(lines), 3, out)
        import json

        steps = [json.loads(l) for l in lines]
        self.assertTrue(all(s["ok"] for s in steps), out)
        # the static:4 step runs one 4-rank ring, the static:2 step 2-rank rings
        self.assertEqual(steps[2]["groups"], [[0, 1, 2, 3]])
        self.assertTrue(all(len(g) == 2 for g in steps[1]["groups"]))


if __name__ == "__main__":
    unittest.main()
