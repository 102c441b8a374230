#!/usr/bin/env python3
"""Tests of the `sluice` command: run the real binary on generated inputs and
check its output, its files and its exit statuses.

usage: cli_test.py --sluice PATH [--sluiced PATH] [--worker PATH] [--bench PATH]
                   [--bound PATH] [--optimum PATH]
                   --tmp DIR GROUP
GROUP is one of: help, list, plan, replay, score, errors, exits (ctest runs each
as cli_<group>). Python standard library only.
"""
import argparse
import csv
import io
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

SLUICE = None
OTHER = {}  # the other binaries: "sluiced", "worker", "bench", "bound", "optimum" -> path
TMP = None
FAILURES = []
SVG_NS = "{http://www.w3.org/2000/svg}"


def run(*args, stdin=None, expect=None, timeout=60, exe=None):
    """Runs sluice (or exe) with args; checks the exit status when expect is given."""
    exe = exe or SLUICE
    p = subprocess.run([exe, *map(str, args)], input=stdin, capture_output=True,
                       text=True, timeout=timeout)
    shown = f"{os.path.basename(exe)} {' '.join(map(str, args))}"
    # under SLUICE_SANITIZE a report exits 1, which some checks expect: look for it
    if "Sanitizer" in p.stderr or "runtime error:" in p.stderr:
        fail(f"{shown}: sanitizer report\n{p.stderr[:4000]}")
    if expect is not None and p.returncode != expect:
        fail(f"{shown}: exit {p.returncode}, expected {expect}\n"
             f"  stdout: {p.stdout[:2000]}\n  stderr: {p.stderr[:2000]}")
    return p


def fail(msg):
    FAILURES.append(msg)
    print("FAIL:", msg, file=sys.stderr)


def check(cond, msg):
    if not cond:
        fail(msg)
    return cond


def path(name):
    return os.path.join(TMP, name)


def write(name, text):
    with open(path(name), "w") as f:
        f.write(text)
    return path(name)


def lengths(seed, n, cap_len):
    """Deterministic log-normal lengths like the web-text traces."""
    rng = random.Random(seed)
    return [max(1, min(cap_len, int(rng.lognormvariate(6.5, 1.3)))) for _ in range(n)]


def one_line_error(p, *needles):
    """A usage error: exit 2, one line on stderr naming every needle."""
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    check(len(lines) == 1, f"expected a one-line error, got {p.stderr!r}")
    for n in needles:
        check(n in p.stderr, f"error {p.stderr!r} does not mention {n!r}")


def commands():
    """Command names as `sluice --help` lists them."""
    out = run("--help", expect=0).stdout
    names, inside = [], False
    for line in out.splitlines():
        if line.startswith("commands:"):
            inside = True
            continue
        if inside:
            m = re.match(r"^  (\S+)\s+\S", line)
            if not m:
                break
            names.append(m.group(1))
    return names


def policies():
    out = run("policies", expect=0).stdout
    names = []
    for line in out.splitlines():
        m = re.match(r"^([ *]) (\S+)", line)
        if m:
            names.append((m.group(2), m.group(1) == "*"))
    return names


# ---- the plan format (plan-format.md) checked independently --------------------

def check_plan_json(doc, ranks, rpn, seq_lengths, what):
    for key in ("format", "policy", "profile", "ranks", "ranks_per_node", "cap_tokens",
                "sequences", "slots", "predicted"):
        if not check(key in doc, f"{what}: missing field {key}"):
            return
    check(doc["format"] == "sluice.plan/1", f"{what}: format {doc['format']}")
    check(doc["ranks"] == ranks and doc["ranks_per_node"] == rpn, f"{what}: cluster shape")
    check([s["id"] for s in doc["sequences"]] == list(range(len(seq_lengths))),
          f"{what}: ids are not the 0-based positions")
    check([s["length"] for s in doc["sequences"]] == seq_lengths, f"{what}: lengths differ")
    seen = {}
    for si, slot in enumerate(doc["slots"]):
        used = set()
        for gi, g in enumerate(slot["groups"]):
            check(len(g["ranks"]) == len(set(g["ranks"])), f"{what}: repeated rank in a ring")
            check(not (used & set(g["ranks"])), f"{what}: slot {si} groups overlap")
            used |= set(g["ranks"])
            check(all(0 <= r < ranks for r in g["ranks"]), f"{what}: rank out of range")
            for s in g["sequences"]:
                seen[s["id"]] = seen.get(s["id"], 0) + 1
    check(sorted(seen) == list(range(len(seq_lengths))) and set(seen.values()) == {1},
          f"{what}: every sequence must be in exactly one group")
    pred = doc["predicted"]
    check(pred["step_ms"] > 0 and pred["ideal_ms"] > 0, f"{what}: predicted times")
    check(pred["step_ms"] >= pred["ideal_ms"] * (1 - 1e-9), f"{what}: step beats the ideal")
    check(len(pred["per_rank_ms"]) == ranks, f"{what}: per_rank_ms length")
    check(abs(max(pred["per_rank_ms"]) - pred["step_ms"]) <= 1e-6 * pred["step_ms"],
          f"{what}: step_ms is not the last rank's finish")


def group_list(doc):
    """(slot, ranks, ids) per group, in plan order."""
    return [(si, g["ranks"], [s["id"] for s in g["sequences"]])
            for si, slot in enumerate(doc["slots"]) for g in slot["groups"]]


def expand_ranks(text):
    out = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def check_svg(file, what):
    try:
        root = ET.parse(file).getroot()
    except ET.ParseError as e:
        fail(f"{what}: {file} is not well-formed XML: {e}")
        return None
    check(root.tag == SVG_NS + "svg", f"{what}: root element is {root.tag}")
    return root


# ---- groups -------------------------------------------------------------------

def test_help():
    names = commands()
    for want in ("plan", "replay", "score", "profiles", "policies", "version", "help"):
        check(want in names, f"`sluice --help` does not list {want}: {names}")
    for name in names:
        p = run(name, "--help", expect=0)
        check(p.stdout.startswith(f"usage: sluice {name}"), f"{name} --help: {p.stdout[:80]!r}")
        check("--help" in p.stdout, f"{name} --help does not list --help")
        q = run("help", name, expect=0)
        check(q.stdout == p.stdout, f"`sluice help {name}` differs from `{name} --help`")
        check(run(name, "-h", expect=0).stdout == p.stdout, f"{name} -h differs")
    # the shared flags are documented where they apply
    plan_help = run("plan", "--help").stdout
    for flag in ("--profile", "--ranks", "--ranks-per-node", "--policy", "--trace-kind",
                 "--field", "--format", "--svg", "--sp", "--time-limit", "--work-limit", "-o"):
        check(flag in plan_help, f"plan --help lacks {flag}")
    replay_help = run("replay", "--help").stdout
    for flag in ("--policies", "--batch", "--shuffle", "--max-len", "--steps", "--per-step"):
        check(flag in replay_help, f"replay --help lacks {flag}")
    p = run(expect=2)
    check("usage: sluice" in p.stderr, "sluice without a command prints usage on stderr")
    one_line_error(run("frobnicate", expect=2), "frobnicate")
    one_line_error(run("help", "frobnicate", expect=2), "frobnicate")
    v = run("version", expect=0).stdout
    check(re.match(r"sluice \d+\.\d+\.\d+\n", v) is not None, f"version: {v!r}")
    check("sluice.plan/1" in v, "version names the plan format")
    check(run("--version", expect=0).stdout == v, "--version equals version")


def test_list():
    p = run("profiles", expect=0).stdout
    for name in ("gpt-7b-flexsp", "gpt-13b-flexsp", "gpt-30b-flexsp"):
        check(name in p, f"profiles lacks {name}")
    # the spec's worked example: 7B on 64 ranks holds 6043 tokens per rank
    line = [l for l in p.splitlines() if l.startswith("gpt-7b-flexsp")][0]
    check(line.split()[-1] == "6043", f"7B cap on 64 ranks: {line}")
    doc = json.loads(run("profiles", "--ranks", 8, "--format", "json", expect=0).stdout)
    caps = {e["name"]: e["cap_tokens"] for e in doc}
    check(set(caps) >= {"gpt-7b-flexsp", "gpt-13b-flexsp", "gpt-30b-flexsp"}, "json profiles")
    gib = 2 ** 30
    want = math.floor((28 * gib - 6.7e9 * 16 / 8) / (4.48 * 2 ** 20))
    check(caps.get("gpt-7b-flexsp") == want, f"7B cap on 8 ranks {caps} != {want}")
    # a profile written by `profiles --format json` is accepted back by --profile FILE
    prof = write("prof7b.json", json.dumps(doc[0]["profile"]))
    lens = write("list.txt", "1000\n2000\n")
    a = run("plan", "--ranks", 8, "--format", "json", lens, expect=0).stdout
    b = run("plan", "--ranks", 8, "--format", "json", "--profile", prof, lens, expect=0).stdout
    check(json.loads(a)["predicted"] == json.loads(b)["predicted"],
          "a profile file equal to the preset must give the same prediction")

    pols = policies()
    check(len(pols) >= 1, "no policies listed")
    check(sum(1 for _, d in pols if d) == 1, f"exactly one default policy: {pols}")
    for name, _ in pols:
        p = run("plan", "--ranks", 8, "--policy", name, "--format", "json", lens, expect=0)
        if p.returncode == 0:
            check(json.loads(p.stdout)["policy"] == name, f"policy {name} names itself")


def test_plan():
    ranks, rpn = 16, 8
    lens = lengths(1, 96, 60000)
    f = write("batch.txt", "# a batch\n" + "".join(f"{x}\n" for x in lens))
    common = ["--ranks", ranks, "--ranks-per-node", rpn]
    # json against the format
    j = run("plan", *common, "--format", "json", f, expect=0).stdout
    doc = json.loads(j)
    check_plan_json(doc, ranks, rpn, lens, "plan json")
    # deterministic: same bytes twice, from stdin too, and via -o
    check(run("plan", *common, "--format", "json", f).stdout == j, "plan json not deterministic")
    text = "".join(f"{x}\n" for x in lens)
    check(run("plan", *common, "--format", "json", "-", stdin=text).stdout == j,
          "stdin gives a different plan")
    check(run("plan", *common, "--format", "json", stdin=text).stdout == j,
          "no argument reads stdin")
    run("plan", *common, "--format", "json", "-o", path("p.json"), f, expect=0)
    check(open(path("p.json")).read() == j, "-o FILE differs from stdout")
    # JSON Lines input with another field gives the same request
    jl = write("batch.jsonl", "".join(json.dumps({"text_len": x, "k": "v"}) + "\n" for x in lens))
    check(run("plan", *common, "--format", "json", "--trace-kind", "jsonl", "--field",
              "text_len", jl, expect=0).stdout == j, "JSONL input gives a different plan")

    # csv: one row per group; the timing rule over its rows gives the step time
    c = run("plan", *common, "--format", "csv", f, expect=0).stdout
    rows = list(csv.DictReader(io.StringIO(c)))
    groups = group_list(doc)
    check(len(rows) == len(groups), f"csv has {len(rows)} rows for {len(groups)} groups")
    ready = [0.0] * ranks
    for row, (slot, rks, ids) in zip(rows, groups):
        check(int(row["slot"]) == slot, "csv slot")
        check(expand_ranks(row["ranks"]) == rks, f"csv ranks {row['ranks']} != {rks}")
        check(int(row["nranks"]) == len(rks) and int(row["nseqs"]) == len(ids), "csv counts")
        check([int(x) for x in row["seq_ids"].split()] == ids, "csv seq ids")
        check(int(row["tokens"]) == sum(lens[i] for i in ids), "csv tokens")
        start = max(ready[r] for r in rks)
        check(abs(float(row["start_ms"]) - start) <= 1e-5 * max(1, start),
              f"csv start {row['start_ms']} != {start}")
        for r in rks:
            ready[r] = start + float(row["ms"])
    step = doc["predicted"]["step_ms"]
    check(abs(max(ready) - step) <= 1e-5 * step, f"timing over csv rows {max(ready)} != {step}")

    # table: header, one line per group, one line per rank
    t = run("plan", *common, f, expect=0).stdout
    for key in ("policy", "profile", "ranks", "cap", "step", "ideal", "step/ideal"):
        check(re.search(rf"^{re.escape(key)}\s", t, re.M), f"table header lacks {key}")
    check(f"{step:.1f} ms" in t, "table step time")
    per_rank = re.findall(r"^\s*(\d+)\s+([\d.]+)\s+([\d.]+)\s+(\d+)\s*$", t, re.M)
    check([int(r[0]) for r in per_rank] == list(range(ranks)), "table has one line per rank")
    check(run("plan", *common, f).stdout == t, "table not deterministic")

    # svg: well-formed, one box per rank of every group, tooltips, title
    run("plan", *common, "--svg", path("plan.svg"), "-o", path("t.txt"), f, expect=0)
    root = check_svg(path("plan.svg"), "plan svg")
    if root is not None:
        gs = [g for g in root.iter(SVG_NS + "g") if g.get("class") == "groups"]
        check(len(gs) == 1, "plan svg has one groups layer")
        if gs:
            boxes = gs[0].findall(SVG_NS + "g")
            check(len(boxes) == len(groups), f"svg has {len(boxes)} groups, plan {len(groups)}")
            for b, (_, rks, _) in zip(boxes, groups):
                check(len(b.findall(SVG_NS + "rect")) == len(rks), "svg boxes per group")
                check(b.find(SVG_NS + "title") is not None, "svg group tooltip")
        text = "".join(root.itertext())
        check("step" in text and "ideal" in text, "svg title names step and ideal")
    check(open(path("plan.svg")).read() == open(path("plan.svg")).read(), "svg readable")
    run("plan", *common, "--svg", path("plan2.svg"), "-o", path("t2.txt"), f, expect=0)
    check(open(path("plan.svg")).read() == open(path("plan2.svg")).read(), "svg not deterministic")

    # static with a fixed degree: every group has that many ranks
    if "static" in [n for n, _ in policies()]:
        d = json.loads(run("plan", *common, "--policy", "static", "--sp", 4, "--format", "json",
                           f, expect=0).stdout)
        check(all(len(g[1]) == 4 for g in group_list(d)), "static --sp 4 groups of 4 ranks")


def test_replay():
    pols = [n for n, _ in policies()]
    base = ["--ranks", 8, "--batch", 64]
    # the built-in synthetic trace
    p = run("replay", *base, "--steps", 3, expect=0)
    for name in pols:
        check(re.search(rf"^{re.escape(name)}\s", p.stdout, re.M), f"replay table lacks {name}")
    check("synthetic" in p.stdout, "replay names the synthetic trace")
    check(p.stderr == "", f"no progress bar when stderr is not a terminal: {p.stderr!r}")
    j = json.loads(run("replay", *base, "--steps", 3, "--format", "json", expect=0).stdout)
    check(j["steps"] == 3 and j["batch"] == 64 and j["ranks"] == 8, "replay json header")
    check([e["policy"] for e in j["policies"]] == pols, "replay runs every policy by default")
    for e in j["policies"]:
        check(e["mean_step_over_ideal"] >= 1 - 1e-9, f"{e['policy']} beats the ideal")
        check(e["p50_ms"] <= e["p99_ms"] + 1e-9, "p50 <= p99")
        check(0 <= e["lost"] <= 3 and e["invalid"] == 0, f"{e['policy']} lost/invalid")
        if e["policy"] == "static":
            check(abs(e["speedup_vs_static"] - 1) < 1e-12, "static's speedup is 1")

    # an absurd --steps is refused up front (the synthetic trace is not grown first)
    p = run("replay", "--steps", 1000000000, expect=2)
    check("512000000000 sequences" in p.stderr and "--max-seqs" in p.stderr,
          f"replay --steps 1e9 names the limit: {p.stderr!r}")
    p = run("replay", "--steps", 20, "--batch", 64, "--max-seqs", 1000, expect=2)
    check("limit --max-seqs" in p.stderr, f"replay --steps beyond --max-seqs: {p.stderr!r}")
    # the trace limits are flags of every command that reads a trace
    t = write("limits.txt", "7\n" * 1000)
    p = run("replay", t, "--batch", 8, "--max-bytes", 1000, expect=2)
    check("more than 1000 bytes (limit --max-bytes)" in p.stderr, f"--max-bytes: {p.stderr!r}")
    p = run("replay", t, "--batch", 8, "--max-seqs", 999, expect=2)
    check("more than 999 sequences (limit --max-seqs)" in p.stderr, f"--max-seqs: {p.stderr!r}")

    # a trace file: drops over-long sequences, per-step csv, svg, csv summary
    lens = lengths(2, 300, 30000) + [50000, 70000]
    random.Random(3).shuffle(lens)
    t = write("trace.txt", "".join(f"{x}\n" for x in lens))
    sub = pols[:2]
    args = ["replay", t, *base, "--max-len", 40000, "--policies", ",".join(sub)]
    j = json.loads(run(*args, "--format", "json", "--per-step", path("steps.csv"), "--svg",
                       path("replay.svg"), expect=0).stdout)
    check(j["trace"]["sequences"] == 302 and j["trace"]["dropped"] == 2, "dropped count")
    check(j["trace"]["longest_kept"] == max(x for x in lens if x <= 40000), "longest kept")
    check(j["steps"] == 300 // 64 and j["trace"]["unused"] == 300 % 64, "steps of the batch")
    rows = list(csv.DictReader(open(path("steps.csv"))))
    check(len(rows) == j["steps"] * len(sub), f"per-step rows {len(rows)}")
    for name in sub:
        mine = [float(r["step_ms"]) for r in rows if r["policy"] == name]
        e = [x for x in j["policies"] if x["policy"] == name][0]
        check(abs(sum(mine) / len(mine) - e["mean_ms"]) <= 1e-6 * e["mean_ms"],
              f"{name}: per-step mean differs from the summary")
    kept = [x for x in lens if x <= 40000]
    check([int(r["tokens"]) for r in rows if r["policy"] == sub[0]] ==
          [sum(kept[s * 64:(s + 1) * 64]) for s in range(j["steps"])], "steps are trace order")
    root = check_svg(path("replay.svg"), "replay svg")
    if root is not None:
        lines = list(root.iter(SVG_NS + "polyline"))
        check(len(lines) == len(sub) + 1, f"replay svg has {len(lines)} lines")
        text = "".join(root.itertext())
        check(all(n in text for n in sub) and "ideal" in text, "replay svg legend")
    c = list(csv.DictReader(io.StringIO(run(*args, "--format", "csv", expect=0).stdout)))
    check([r["policy"] for r in c] == sub, "replay csv rows")

    # shuffling is deterministic per seed and changes the steps
    def tokens(seed):
        run(*args, "--shuffle", seed, "--per-step", path("s.csv"), "-o", path("o.txt"),
            expect=0)
        return [r["tokens"] for r in csv.DictReader(open(path("s.csv")))]
    a, b, c2 = tokens(5), tokens(5), tokens(6)
    check(a == b, "--shuffle SEED is not deterministic")
    check(a != c2, "--shuffle 5 and 6 give the same steps")
    # --steps stops early
    j2 = json.loads(run(*args, "--steps", 2, "--format", "json", expect=0).stdout)
    check(j2["steps"] == 2, "--steps 2")
    # too short for one step: a runtime error that says so
    p = run("replay", write("short.txt", "100\n200\n"), *base, expect=1)
    check("--batch 64" in p.stderr, f"short trace message: {p.stderr!r}")


def hand_plan(cap, groups, seqs, slots=None):
    """A plan for 8 ranks of gpt-7b-flexsp, without predicted numbers."""
    return {"format": "sluice.plan/1", "policy": "hand", "profile": "gpt-7b-flexsp",
            "ranks": 8, "ranks_per_node": 8, "cap_tokens": cap,
            "sequences": [{"id": i, "length": x} for i, x in enumerate(seqs)],
            "slots": slots if slots is not None else [{"groups": groups}]}


def score_json(doc, name, expect):
    f = write(name, json.dumps(doc))
    p = run("score", "--format", "json", f, expect=expect)
    try:
        return json.loads(p.stdout), p
    except ValueError:
        fail(f"score --format json {name}: not JSON: {p.stdout!r}")
        return None, p


def test_score():
    # a valid plan straight from `sluice plan`
    lens = lengths(4, 80, 40000)
    f = write("b.txt", "".join(f"{x}\n" for x in lens))
    run("plan", "--ranks", 16, "--format", "json", "-o", path("valid.json"), f, expect=0)
    p = run("score", path("valid.json"), expect=0)
    check(re.search(r"^valid\s+yes", p.stdout, re.M), f"valid plan: {p.stdout}")
    doc = json.load(open(path("valid.json")))
    check(f"{doc['predicted']['step_ms']:.1f} ms" in p.stdout, "score prints the step time")
    check(run("score", "-", stdin=open(path("valid.json")).read(), expect=0).stdout ==
          p.stdout.replace(path("valid.json"), "-"), "score - reads the plan from stdin")
    rep = json.loads(run("score", "--format", "json", path("valid.json"), expect=0).stdout)
    check(rep["valid"] is True and rep["violations"] == [], "json report of a valid plan")
    check(abs(rep["step_ms"] - doc["predicted"]["step_ms"]) <= 1e-6 * rep["step_ms"],
          "score recomputes the same step time")

    cap = [e for e in json.loads(run("profiles", "--ranks", 8, "--format", "json").stdout)
           if e["name"] == "gpt-7b-flexsp"][0]["cap_tokens"]
    seqs = [1000, 2000, 500, 3000]
    groups = [{"ranks": [0, 1], "sequences": [{"id": 0}]},
              {"ranks": [2, 3], "sequences": [{"id": 1}]},
              {"ranks": [4], "sequences": [{"id": 2}]},
              {"ranks": [5, 6, 7], "sequences": [{"id": 3, "offload": 0.0}]}]
    # without predicted numbers the report says so and gives them; with them it is valid
    rep, _ = score_json(hand_plan(cap, groups, seqs), "nopred.json", 1)
    if rep:
        check(any("predicted.step_ms" in v for v in rep["violations"]), "missing predicted")
        good = hand_plan(cap, groups, seqs)
        good["predicted"] = {"step_ms": rep["step_ms"], "ideal_ms": rep["ideal_ms"],
                             "per_rank_ms": [0] * 8}
        rep2, _ = score_json(good, "good.json", 0)
        if rep2:
            check(rep2["valid"] and rep2["violations"] == [], f"hand plan: {rep2}")

    def broken(name, mutate, needle):
        d = hand_plan(cap, json.loads(json.dumps(groups)), list(seqs))
        mutate(d)
        rep, p = score_json(d, name, 1)
        if rep:
            check(rep["valid"] is False, f"{name}: valid is {rep['valid']}")
            check(any(needle in v for v in rep["violations"]),
                  f"{name}: no violation mentions {needle!r}: {rep['violations']}")
        t = run("score", path(name), expect=1).stdout
        check(re.search(r"^valid\s+no", t, re.M) and needle in t, f"{name} table: {t}")

    broken("dup.json", lambda d: d["slots"][0]["groups"][2]["sequences"].append({"id": 0}),
           "sequence 0 is in 2 groups")
    broken("overlap.json", lambda d: d["slots"][0]["groups"][1]["ranks"].append(0), "disjoint")
    broken("memory.json", lambda d: d["sequences"].__setitem__(2, {"id": 2, "length": 5 * cap}),
           "exceed the capacity")
    broken("missing_seq.json", lambda d: d["slots"][0]["groups"].pop(2), "is in no group")
    broken("badcap.json", lambda d: d.__setitem__("cap_tokens", cap + 1), "cap_tokens")

    # unreadable input: exit 2 with the reason
    d = hand_plan(cap, groups, seqs)
    del d["slots"]
    p = run("score", write("noslots.json", json.dumps(d)), expect=2)
    check("slots" in p.stderr, f"missing field message: {p.stderr!r}")
    p = run("score", write("garbage.json", "{ not json"), expect=2)
    check("garbage.json" in p.stderr, f"bad JSON message: {p.stderr!r}")
    p = run("score", path("does-not-exist.json"), expect=2)
    check("does-not-exist.json" in p.stderr, f"missing plan message: {p.stderr!r}")
    d = hand_plan(cap, groups, seqs)
    d["profile"] = "no-such-profile"
    p = run("score", write("unknown_profile.json", json.dumps(d)), expect=2)
    check("no-such-profile" in p.stderr, f"unknown profile message: {p.stderr!r}")
    # a plan's profile is a preset name, never a path score opens: a readable file
    # named there (even a valid profile) is refused without reading it
    secret = write("secret.txt", "TOPSECRET-BYTES\n")
    prof_file = write("prof_in_plan.json",
                      json.dumps(json.loads(run("profiles", "--format", "json").stdout)[0]
                                 ["profile"]))
    for named in (secret, prof_file):
        d = hand_plan(cap, groups, seqs)
        d["profile"] = named
        p = run("score", write("path_profile.json", json.dumps(d)), expect=2)
        check("TOPSECRET" not in p.stderr and "--profile" in p.stderr,
              f"score must not open the plan's profile path: {p.stderr!r}")
    # ...but the user may name a file with --profile
    run("score", "--profile", prof_file, path("valid.json"), expect=0)
    # lengths beyond SL_MAX_SEQ_LEN are refused before any arithmetic
    d = hand_plan(cap, groups, seqs)
    d["sequences"][0]["length"] = 2 ** 63 - 1
    p = run("score", write("huge_len.json", json.dumps(d)), expect=2)
    check("1099511627776" in p.stderr, f"huge length message: {p.stderr!r}")


def test_errors():
    f = write("ok.txt", "100\n200\n300\n")
    cases = [
        (["plan", "--ranks", "abc", f], ["--ranks", "abc"]),
        (["plan", "--ranks", "0", f], ["--ranks", "'0'"]),
        (["plan", "--ranks", f], None),  # the path is taken as the value: not a number
        (["plan", "--bogus", f], ["--bogus"]),
        (["plan", "--format", "xml", f], ["--format", "xml"]),
        (["plan", "--format=xml", f], ["--format", "xml"]),
        (["plan", "--policy", "nope", f], ["--policy", "nope"]),
        (["plan", "--profile", "no-such-profile", f], ["--profile", "no-such-profile"]),
        (["plan", "--trace-kind", "csv", f], ["--trace-kind", "csv"]),
        (["plan", "--time-limit", "-5", f], ["--time-limit", "-5"]),
        (["plan", "--ranks", "8", "--ranks-per-node", "16", f], ["--ranks-per-node", "16"]),
        (["plan", f, f], [f]),
        (["plan", "--format"], ["--format"]),
        (["replay", "--batch", "0"], ["--batch", "'0'"]),
        (["replay", "--shuffle", "x1"], ["--shuffle", "x1"]),
        (["replay", "--policies", "static,,x"], ["--policies"]),
        (["replay", "--policies", "nope"], ["--policies", "nope"]),
        (["replay", "--max-len", "-1"], ["--max-len", "-1"]),
        (["replay", "--steps", "many"], ["--steps", "many"]),
        (["score"], ["argument"]),
        (["score", "--format", "yaml", "x.json"], ["--format", "yaml"]),
        (["profiles", "--ranks", "1e9"], ["--ranks", "1e9"]),
        (["policies", "extra"], ["extra"]),
        (["version", "--verbose"], ["--verbose"]),
    ]
    pols = [n for n, _ in policies()]
    if len(pols) >= 1:
        cases.append((["replay", "--policies", f"{pols[0]},{pols[0]}"], ["--policies", "twice"]))
    for args, needles in cases:
        p = run(*args, expect=2)
        if needles:
            one_line_error(p, *needles)
    # missing input file: unreadable input (exit 2) naming the path
    for cmd in ("plan", "replay"):
        p = run(cmd, "--ranks", 8, path("nope/missing.txt"), expect=2)
        check(path("nope/missing.txt") in p.stderr, f"{cmd}: missing file message {p.stderr!r}")
    # a garbage lengths file is unreadable input too: the message names the file and line
    g = write("garbage.txt", "100\n200\nabc\n400\n")
    p = run("plan", "--ranks", 8, g, expect=2)
    check("garbage.txt" in p.stderr and re.search(r"(:3\b|line 3\b)", p.stderr),
          f"garbage file message lacks the line: {p.stderr!r}")
    p = run("plan", "--ranks", 8, write("zero.txt", "100\n0\n"), expect=2)
    check("zero.txt" in p.stderr or "length 0" in p.stderr, f"zero length: {p.stderr!r}")
    p = run("plan", "--ranks", 8, write("empty.txt", "# nothing\n"), expect=2)
    check("empty.txt" in p.stderr, f"empty input: {p.stderr!r}")
    # attack profiles: refused as unreadable input, naming field, value and limit,
    # by every policy (the sluice policy once overflowed its heap on alpha1 = 1e308)
    base = json.loads(run("profiles", "--format", "json", expect=0).stdout)[0]["profile"]
    attacks = [({"alpha1": 1e308}, ["alpha1", "1e+308", "1e+60"]),
               ({"gpu_mem_bytes": 9.3e18, "act_bytes_per_token": 1},
                ["gpu_mem_bytes", "9.3e+18", "70368744177664"]),
               ({"act_bytes_per_token": 1e-300}, ["act_bytes_per_token", "1e-300"]),
               ({"pcie_gbps": 5e-324}, ["pcie_gbps", "4.94066e-324", "1e+60"])]
    for k, (change, needles) in enumerate(attacks):
        prof = write(f"attack{k}.json", json.dumps({**base, **change}))
        for pol in [n for n, _ in policies()]:
            p = run("plan", "--ranks", 8, "--policy", pol, "--profile", prof, f, expect=2)
            for n in needles:
                check(n in p.stderr, f"attack {change} ({pol}): {p.stderr!r} lacks {n!r}")
    # output file that cannot be written
    p = run("plan", "--ranks", 8, "-o", path("nope/out.txt"), f, expect=1)
    check(path("nope/out.txt") in p.stderr, f"unwritable output: {p.stderr!r}")


EXIT_TABLE = ("exit status: 0 success; 1 failure", "2 usage error or unreadable input")


def exit_paragraph(text, what):
    """The exit-status paragraph of a --help text, whitespace normalised."""
    at = text.find("exit status:")
    if not check(at >= 0, f"{what} --help does not state the exit statuses"):
        return ""
    para = " ".join(text[at:].split("\n\n")[0].split())
    for piece in EXIT_TABLE:
        check(piece in para, f"{what} --help: {piece!r} not in {para!r}")
    return para


def test_exits():
    """One exit-status table for every binary and command: --help exits 0 and
    states it (the same text everywhere), --version exits 0, an unknown option
    exits 2, a nonexistent input file exits 2 and a failure exits 1."""
    f = write("ok.txt", "100\n200\n300\n")
    plan_json = path("exits_plan.json")
    run("plan", "--ranks", 8, "--format", "json", "-o", plan_json, f, expect=0)
    bad_plan = dict(json.load(open(plan_json)), cap_tokens=1)  # a violation
    bad_plan_file = write("exits_bad_plan.json", json.dumps(bad_plan))
    missing = path("nope/missing.txt")
    dead = "ipc://" + path("nope/no-daemon.sock")
    # command -> (args reading a nonexistent input, args that fail) or None
    sluice_cases = {
        "plan": ([missing], ["--ranks", 1, "--ranks-per-node", 1, "--profile",
                             "gpt-30b-flexsp", f]),
        "replay": ([missing], ["--ranks", 1, "--ranks-per-node", 1, "--profile",
                               "gpt-30b-flexsp", f]),
        "score": ([missing], [bad_plan_file]),
        "run-plan": ([missing], ["--worker", path("nope/sluice-worker"), plan_json]),
        "submit": ([missing], ["--endpoint", dead, "--timeout", 300, f]),
        "status": (None, ["--endpoint", dead, "--timeout", 300]),
        "keygen": (None, [path("nope/key")]),
        # without a GPU (CI) measuring fails; on one, writing into a missing folder does
        "profile": (["--from", missing], ["--model", "gpt-7b", "--reps", 1, "-o",
                                          path("nope/p.json")]),
        "profiles": (None, None),
        "policies": (None, None),
        "version": (None, None),
        "help": (None, None),
    }
    names = commands()
    check(set(names) == set(sluice_cases), f"commands {names} vs the cases {set(sluice_cases)}")
    # a settle time out of range is a usage error naming the option, GPU or not
    p = run("profile", "--settle-ms", -1, "--model", "gpt-7b", expect=2)
    check("settle-ms" in p.stderr, f"profile --settle-ms -1: {p.stderr!r}")
    p = run("profile", "--settle-load", "idle", "--model", "gpt-7b", expect=2)
    check("settle-load" in p.stderr and "layer" in p.stderr,
          f"profile --settle-load idle: {p.stderr!r}")
    paras = {"sluice": exit_paragraph(run("--help", expect=0).stdout, "sluice")}
    for name in names:
        paras[f"sluice {name}"] = exit_paragraph(run(name, "--help", expect=0).stdout, name)
        v = run(name, "--version", expect=0).stdout
        check(v.startswith("sluice "), f"sluice {name} --version: {v!r}")
        run(name, "--no-such-option", expect=2)
        nofile, failing = sluice_cases.get(name, (None, None))
        if nofile:
            p = run(name, *nofile, expect=2)
            check(missing in p.stderr, f"sluice {name}: missing file not named: {p.stderr!r}")
        if failing:
            run(name, *failing, expect=1)
    # the other binaries
    others = {
        "sluiced": (["--config", missing], ["--endpoint", dead]),
        "worker": (["--plan", missing, "--rank", 0],
                   ["--plan", plan_json, "--rank", 0, "--run-dir", path("nope/run")]),
        "bench": ([missing], ["--ranks", 1, "--per-node", 1, "--profile", "gpt-30b-flexsp", f]),
        "bound": ([missing], ["--ranks", 1, "--per-node", 1, "--profile", "gpt-30b-flexsp", f]),
        "optimum": ([missing], ["--profile", "gpt-30b-flexsp", f]),
    }
    for key, (nofile, failing) in others.items():
        exe = OTHER.get(key)
        if exe is None:
            continue
        what = os.path.basename(exe)
        paras[what] = exit_paragraph(run("--help", exe=exe, expect=0).stdout, what)
        v = run("--version", exe=exe, expect=0).stdout
        check(v.startswith(what + " "), f"{what} --version: {v!r}")
        run("--no-such-option", exe=exe, expect=2)
        p = run(*nofile, exe=exe, expect=2)
        check(missing in p.stderr, f"{what}: missing file not named: {p.stderr!r}")
        run(*failing, exe=exe, expect=1, timeout=60)
    # one text, not copies that drift
    texts = set(paras.values())
    check(len(texts) == 1, f"exit-status paragraphs differ: {paras}")


GROUPS = {"help": test_help, "list": test_list, "plan": test_plan, "replay": test_replay,
          "score": test_score, "errors": test_errors, "exits": test_exits}


def main():
    global SLUICE, TMP
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True)
    for key in ("sluiced", "worker", "bench", "bound", "optimum"):
        ap.add_argument("--" + key)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("group", choices=sorted(GROUPS))
    a = ap.parse_args()
    SLUICE, TMP = a.sluice, a.tmp
    OTHER.update({k: getattr(a, k) for k in ("sluiced", "worker", "bench", "bound", "optimum")
                  if getattr(a, k)})
    shutil.rmtree(TMP, ignore_errors=True)
    os.makedirs(TMP)
    GROUPS[a.group]()
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed in cli_{a.group}", file=sys.stderr)
        return 1
    print(f"cli_{a.group}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
