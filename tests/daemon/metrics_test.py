#!/usr/bin/env python3
"""sluiced --metrics: a real daemon serving /metrics over HTTP (libmicrohttpd),
scraped before and after a short load of real plan requests (`sluice submit`,
good and bad), parsed with prometheus_client's text-format parser (Debian's
python3-prometheus-client). The counters must move by exactly what was sent.

usage: metrics_test.py SLUICED SLUICE TMPDIR"""
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

FAILURES = []


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, file=sys.stderr)


def scrape(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        check(r.status == 200, f"status {r.status}")
        ctype = r.headers.get("Content-Type", "")
        check(ctype.startswith("text/plain; version=0.0.4"), f"content type {ctype!r}")
        text = r.read().decode()
    samples = {}
    types = {}
    for fam in text_string_to_metric_families(text):
        types[fam.name] = fam.type
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            check(key not in samples, f"sample {key} twice")
            samples[key] = s.value
    return text, samples, types


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def main():
    sluiced, sluice, tmp = sys.argv[1:4]
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    ep = f"ipc://{tmp}/m.sock"
    d = subprocess.Popen([sluiced, "--endpoint", ep, "--threads", "1", "--policy", "static",
                          "--metrics", "127.0.0.1:0", "--log-level", "warn"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = None
        for line in d.stdout:
            m = re.search(r"metrics on (http://\S+/metrics)", line)
            if m:
                url = m.group(1)
            if "listening on" in line:
                break
        check(url is not None and url.startswith("http://127.0.0.1:"), f"metrics url {url!r}")
        if url is None:
            return 1
        text, before, types = scrape(url)
        for name, typ in [("sluice_requests", "counter"), ("sluice_replies", "counter"),
                          ("sluice_errors", "counter"), ("sluice_undeliverable", "counter"),
                          ("sluice_plan_duration_seconds", "histogram"),
                          ("sluice_queue_depth", "gauge"), ("sluice_planner_threads_busy", "gauge"),
                          ("sluice_planner_threads", "gauge"), ("sluice_job_steps", "counter"),
                          ("sluice_job_predicted_step_seconds", "gauge"),
                          ("sluice_job_workers_connected", "gauge"),
                          ("sluice_job_worker_outcomes", "counter")]:
            check(types.get(name) == typ, f"{name} is {types.get(name)!r}, not {typ}")
        check(value(before, "sluice_planner_threads") == 1, "planner threads gauge")

        batch = os.path.join(tmp, "b.txt")
        with open(batch, "w") as f:
            f.write("1000\n2000\n30000\n")
        good, bad = 5, 2
        for step in range(good):
            r = subprocess.run([sluice, "submit", "--endpoint", ep, "--job", "mjob",
                                "--step", str(step + 1), batch],
                               capture_output=True, text=True, timeout=60)
            check(r.returncode == 0, f"submit {step}: {r.returncode} {r.stderr}")
        for _ in range(bad):
            r = subprocess.run([sluice, "submit", "--endpoint", ep, "--job", "mjob",
                                "--policy", "no-such-policy", batch],
                               capture_output=True, text=True, timeout=60)
            check(r.returncode == 1, f"bad submit: {r.returncode} {r.stderr}")

        _, after, _ = scrape(url)
        def moved(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)
        check(moved("sluice_requests_total", kind="plan") == good + bad, "plan requests")
        check(moved("sluice_replies_total", kind="plan") == good, "plan replies")
        check(moved("sluice_replies_total", kind="error") == bad, "error replies")
        check(moved("sluice_errors_total", code="SL_ENOTFOUND") == bad, "errors by code")
        check(moved("sluice_plan_duration_seconds_count") == good, "plan latency count")
        check(value(after, "sluice_plan_duration_seconds_bucket", le="+Inf") == good,
              "+Inf bucket")
        check(value(after, "sluice_job_steps_total", job="mjob") == good, "job steps")
        check(value(after, "sluice_job_predicted_step_seconds", job="mjob") > 0,
              "predicted step")
        check(value(after, "sluice_queue_depth") == 0, "queue drained")
        check(value(after, "sluice_planner_threads_busy") == 0, "threads idle")
        check(moved("sluice_metrics_scrapes_total") == 1, "scrape counter")

        # anything but GET /metrics is refused
        for path, code in [("/", 404), ("/metrics/x", 404)]:
            try:
                urllib.request.urlopen(url.replace("/metrics", path), timeout=30)
                check(False, f"{path} answered 200")
            except urllib.error.HTTPError as e:
                check(e.code == code, f"{path}: {e.code}")
        try:
            urllib.request.urlopen(urllib.request.Request(url, data=b"x", method="POST"),
                                   timeout=30)
            check(False, "POST answered 200")
        except urllib.error.HTTPError as e:
            check(e.code == 405, f"POST: {e.code}")
    finally:
        d.terminate()
        rc = d.wait(timeout=60)
        check(rc == 0, f"sluiced exit {rc}")
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed", file=sys.stderr)
        return 1
    print("metrics: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
