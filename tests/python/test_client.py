"""End to end: sluice.Client against a real sluiced on an ipc:// socket in a
temp dir, with the real libsluice. Plans are compared with the ones the
`sluice` command makes locally for the same request (plans are
deterministic, so the daemon's must match)."""

import json
import os
import tempfile
import unittest

import sluice
from support import Daemon, cli, cli_plan, lengths, need


def same_plan(test, got, want):
    """The daemon's plan equals the CLI's: request, slots, prediction."""
    for key in ("format", "policy", "profile", "ranks", "ranks_per_node", "cap_tokens", "sequences", "slots"):
        test.assertEqual(got.raw[key], want[key], key)
    test.assertAlmostEqual(got.step_ms, want["predicted"]["step_ms"], places=2)
    test.assertAlmostEqual(got.ideal_ms, want["predicted"]["ideal_ms"], places=2)


class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        need("SLUICE_LIB")
        cls.daemon = Daemon("--ranks", "8", "--ranks-per-node", "8")
        cls.client = sluice.Client(cls.daemon.endpoint)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        rc = cls.daemon.stop()
        if rc != 0:
            raise AssertionError("sluiced exited with %d after SIGTERM; its log:\n%s"
                                 % (rc, cls.daemon.final_log[-4000:]))

    def test_blocking_plan_matches_the_cli(self):
        lens = lengths(3, 40, 300, 40000)
        for policy, extra in (("sluice", []), ("static", ["--sp", 4]), ("megatron-hybrid-cp", [])):
            with self.subTest(policy=policy):
                sp = int(extra[1]) if extra else 0
                plan = self.client.plan(lens, step=5, job="py-e2e", policy=policy, ranks=16,
                                        ranks_per_node=8, sp=sp, timeout_ms=30000)
                self.assertIsInstance(plan, sluice.Plan)
                self.assertEqual((plan.job, plan.step, plan.policy, plan.ranks), ("py-e2e", 5, policy, 16))
                self.assertEqual(plan.sequences, list(enumerate(lens)))
                want = cli_plan(lens, "--ranks", 16, "--ranks-per-node", 8, "--policy", policy, *extra)
                same_plan(self, plan, want)
                # the helpers take the client's Plan as they take the CLI's dict
                self.assertEqual(sluice.megatron_schedule(plan, strict=False).sample_id_groups,
                                 sluice.megatron_schedule(want, strict=False).sample_id_groups)

    def test_daemon_defaults_and_ids(self):
        ids = [1000 + 7 * i for i in range(6)]
        plan = self.client.plan([4000, 100, 7000, 250, 900, 30000], ids=ids, job="py-ids")
        self.assertEqual((plan.ranks, plan.ranks_per_node, plan.profile), (8, 8, "gpt-7b-flexsp"))
        self.assertEqual([i for i, _ in plan.sequences], ids)
        sched = sluice.megatron_schedule(plan, strict=False)
        got = sorted({i for row in sched.sample_id_groups for ids_ in row for i in ids_})
        self.assertEqual(got, ids)
        with self.assertRaises(ValueError):
            self.client.plan([1, 2, 3], ids=[1, 2])

    def test_non_blocking(self):
        c = self.client
        batches = {step: lengths(step, 12, 100, 20000) for step in (11, 12, 13)}
        rids = {c.send(lens, step=step, job="py-async", policy="static"): step for step, lens in batches.items()}
        self.assertEqual(len(rids), 3)
        self.assertEqual(sorted(c.pending), sorted(rids))
        # a blocking plan meanwhile gets its own reply; the others stay queued
        mine = c.plan([5000, 6000], step=99, job="py-async")
        self.assertEqual(mine.step, 99)
        got = {}
        for _ in range(3):
            p = c.recv(30000)
            self.assertIsNotNone(p)
            self.assertIn(p.request_id, rids)
            self.assertEqual(p.step, rids[p.request_id])
            self.assertEqual(p.job, "py-async")
            got[p.step] = p
        self.assertEqual(sorted(got), [11, 12, 13])
        for step, p in got.items():
            self.assertEqual([s for _, s in p.sequences], batches[step])
            same_plan(self, p, cli_plan(batches[step], "--ranks", 8, "--policy", "static"))
        self.assertEqual(c.pending, [])
        self.assertFalse(c.poll(0))
        self.assertIsNone(c.recv(50))

    def test_unknown_policy(self):
        with self.assertRaises(sluice.SluiceError) as cm:
            self.client.plan([1000, 2000], policy="no-such-policy", job="py-err")
        e = cm.exception
        self.assertEqual(e.name, "SL_ENOTFOUND")
        self.assertEqual(e.code, sluice.ERROR_NAMES.index("SL_ENOTFOUND"))
        self.assertIn("no-such-policy", e.message)
        self.assertIn("policy", e.field)
        self.assertIn("no-such-policy", str(e))

    def test_zero_length(self):
        with self.assertRaises(sluice.SluiceError) as cm:
            self.client.plan([1000, 0, 5], job="py-err")
        e = cm.exception
        self.assertIn("length 0", e.message)
        self.assertIn("lengths[1]", e.field)

    def test_error_reply_to_a_send(self):
        c = self.client
        rid = c.send([10, 20], policy="no-such-policy", job="py-err")
        ok = c.send([10, 20], job="py-err", step=1)
        seen = set()
        for _ in range(2):
            try:
                p = c.recv(30000)
                self.assertEqual(p.request_id, ok)
                seen.add(p.request_id)
            except sluice.SluiceError as e:
                self.assertEqual(e.request_id, rid)
                self.assertIn("no-such-policy", e.message)
                seen.add(e.request_id)
        self.assertEqual(seen, {rid, ok})

    def test_unknown_profile_and_inline_profile(self):
        with self.assertRaises(sluice.SluiceError) as cm:
            self.client.plan([1000], profile="no-such-profile", job="py-err")
        self.assertIn("no-such-profile", cm.exception.message)
        prof = json.loads(cli("profiles", "--format", "json", "--ranks", 8))[0]["profile"]
        prof["name"] = "py-inline"
        prof["gpu_mem_bytes"] = prof["gpu_mem_bytes"] / 2
        lens = lengths(5, 20, 100, 9000)
        plan = self.client.plan(lens, profile=prof, job="py-inline", policy="static")
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "p.json")
            with open(path, "w") as f:
                json.dump(prof, f)
            want = cli_plan(lens, "--ranks", 8, "--policy", "static", "--profile", path)
        same_plan(self, plan, want)
        self.assertLess(plan.cap_tokens, 3547)  # half the memory of gpt-7b-flexsp on 8 ranks
        bad = dict(prof, alpha1="x")
        with self.assertRaises(sluice.SluiceError) as cm:
            self.client.plan(lens, profile=bad, job="py-inline")
        self.assertIn("alpha1", cm.exception.message)

    def test_status(self):
        self.client.plan([3000, 4000], step=42, job="py-status")
        st = self.client.status()
        self.assertEqual(st["format"], "sluice.status/1")
        jobs = {j["job"]: j for j in st["jobs"]}
        self.assertIn("py-status", jobs)
        self.assertIn(42, [s["step"] for s in jobs["py-status"]["steps"]])
        one = self.client.status(job="py-status", max_steps=1)
        self.assertEqual([j["job"] for j in one["jobs"]], ["py-status"])
        self.assertEqual(self.client.events(), [])


class LifetimeTest(unittest.TestCase):
    def test_context_manager_and_closed_client(self):
        need("SLUICE_LIB")
        d = Daemon()
        try:
            with sluice.Client(d.endpoint) as c:
                self.assertEqual(c.plan([100, 200], ranks=4).ranks, 4)
                self.assertIn(d.endpoint, repr(c))
            self.assertTrue(c.closed)
            with self.assertRaises(sluice.SluiceError) as cm:
                c.plan([1])
            self.assertEqual(cm.exception.name, "SL_ECLOSED")
            c.close()  # twice is fine
        finally:
            self.assertEqual(d.stop(), 0, d.final_log[-4000:])

    def test_no_daemon(self):
        need("SLUICE_LIB")
        with tempfile.TemporaryDirectory() as d:
            with sluice.Client("ipc://%s/nobody.sock" % d) as c:
                with self.assertRaises(sluice.SluiceError) as cm:
                    c.plan([100], timeout_ms=200)
                self.assertIn(cm.exception.name, ("SL_EBUSY", "SL_ETIMEOUT"))
                self.assertTrue(cm.exception.message)

    def test_bad_endpoint(self):
        need("SLUICE_LIB")
        with self.assertRaises(sluice.SluiceError) as cm:
            sluice.Client("carrier-pigeon://nowhere")
        self.assertIn("carrier-pigeon", cm.exception.message)


class CurveTest(unittest.TestCase):
    """tcp:// with CURVE: keys from sluice.keygen, the daemon's public key
    as a .pub file or as Z85 text; a key the daemon does not list gets no
    plan."""

    def test_tcp_with_curve(self):
        need("SLUICE_LIB")
        with tempfile.TemporaryDirectory() as d:
            srv_key, srv_pub = sluice.keygen(os.path.join(d, "server"))
            cli_key, cli_pub = sluice.keygen(os.path.join(d, "client"))
            other_key, _ = sluice.keygen(os.path.join(d, "other"))
            self.assertEqual(os.stat(cli_key).st_mode & 0o777, 0o600)
            with self.assertRaises(sluice.SluiceError):
                sluice.keygen(os.path.join(d, "client"))  # refuses to overwrite
            ak = os.path.join(d, "authorized_keys")
            with open(cli_pub) as f, open(ak, "w") as out:
                out.write(f.read())
            with open(srv_pub) as f:
                srv_z85 = f.read().split()[0]
            self.assertEqual(len(srv_z85), 40)
            daemon = Daemon("--curve-secret-key", srv_key, "--authorized-keys", ak,
                            endpoint="tcp://127.0.0.1:*")
            try:
                self.assertTrue(daemon.endpoint.startswith("tcp://127.0.0.1:"))
                for server_key in (srv_pub, srv_z85):
                    with sluice.Client(daemon.endpoint, server_key=server_key, secret_key_file=cli_key) as c:
                        p = c.plan([3000, 500, 12000], ranks=8, job="py-curve", timeout_ms=30000)
                        self.assertEqual([s for _, s in p.sequences], [3000, 500, 12000])
                with sluice.Client(daemon.endpoint, server_key=srv_pub, secret_key_file=other_key) as c:
                    with self.assertRaises(sluice.SluiceError) as cm:
                        c.plan([3000], ranks=8, job="py-curve", timeout_ms=1000)
                    self.assertIn(cm.exception.name, ("SL_EDENIED", "SL_ETIMEOUT", "SL_EBUSY"))
                with self.assertRaises(sluice.SluiceError) as cm:
                    sluice.Client(daemon.endpoint, server_key=srv_pub, secret_key_file=os.path.join(d, "nope.key"))
                self.assertIn("nope.key", cm.exception.message)
            finally:
                self.assertEqual(daemon.stop(), 0, daemon.final_log[-4000:])


if __name__ == "__main__":
    unittest.main()
