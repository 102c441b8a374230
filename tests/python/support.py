"""Shared pieces of the Python client tests: paths CMake passes in the
environment, the real `sluice` command, deterministic lengths, a real
sluiced on an ipc:// socket in a temp dir."""

import csv
import io
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
import unittest


def need(var):
    path = os.environ.get(var)
    if not path:
        raise unittest.SkipTest("%s is not set (run these tests through ctest)" % var)
    return path


def child_env():
    """The environment of the C programs the tests start: in a sanitizer
    build they get ASan's leak checker back (python3 itself runs without)."""
    env = dict(os.environ)
    if "SLUICE_CHILD_ASAN_OPTIONS" in env:
        env["ASAN_OPTIONS"] = env["SLUICE_CHILD_ASAN_OPTIONS"]
        env.pop("LD_PRELOAD", None)
    return env


def lengths(seed, n, lo, hi):
    """n deterministic lengths in [lo, hi] (xorshift64)."""
    x = (seed * 6364136223846793005 + 1442695040888963407) & (2**64 - 1)
    out = []
    for _ in range(n):
        x ^= (x << 13) & (2**64 - 1)
        x ^= x >> 7
        x ^= (x << 17) & (2**64 - 1)
        out.append(lo + x % (hi - lo + 1))
    return out


def cli(*args, stdin=None):
    """Runs `sluice ARGS`, returns stdout; fails the test on a nonzero exit."""
    r = subprocess.run(
        [need("SLUICE_CLI")] + [str(a) for a in args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    if r.returncode != 0:
        raise AssertionError("sluice %s: exit %d: %s" % (" ".join(map(str, args)), r.returncode, r.stderr))
    return r.stdout


def cli_plan(lens, *args):
    """The JSON plan `sluice plan --format json ARGS` makes for lens."""
    text = cli("plan", "--format", "json", *args, "-", stdin="".join("%d\n" % s for s in lens))
    return json.loads(text)


def cli_csv(lens, *args):
    """The rows of `sluice plan --format csv ARGS` as dicts."""
    text = cli("plan", "--format", "csv", *args, "-", stdin="".join("%d\n" % s for s in lens))
    return list(csv.DictReader(io.StringIO(text)))


class Daemon:
    """A real sluiced listening on ipc://<tmp>/sluiced.sock, or on the
    endpoint given."""

    def __init__(self, *extra, endpoint=None):
        self.dir = tempfile.mkdtemp(prefix="sluice-py-")
        if endpoint is None:
            endpoint = "ipc://%s/sluiced.sock" % self.dir
        self.log = open(os.path.join(self.dir, "sluiced.log"), "w+")
        self.proc = subprocess.Popen(
            [need("SLUICED"), "--endpoint", endpoint, "--log-level", "warn", "--threads", "2"]
            + list(extra),
            stdout=subprocess.PIPE,
            stderr=self.log,
            env=child_env(),
        )
        line = self._read_line(10.0)
        if "listening on " not in line:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError("sluiced did not start: %r; log: %s" % (line, self.read_log()))
        # the endpoint it really listens on (tcp://HOST:* picks a port)
        self.endpoint = line.split("listening on ", 1)[1].split()[0]

    def _read_line(self, timeout):
        buf = b""
        end = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while not buf.endswith(b"\n"):
            left = end - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                break
            ch = os.read(fd, 1)
            if not ch:
                break
            buf += ch
        return buf.decode("utf-8", "replace")

    def read_log(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def stop(self):
        """SIGTERM, then waits; returns the exit status (its stderr is then
        in final_log)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self.final_log = self.read_log()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.proc.returncode
