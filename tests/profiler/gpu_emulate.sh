#!/usr/bin/env bash
# `sluice run-plan --emulate` on a GPU, small shape: every group execution of
# a 4-rank plan (rings and single ranks, offload) is timed on the one GPU;
# every rank time and part positive, the report's step follows from them.
# Exit 77 (skipped) without a GPU.
# usage: gpu_emulate.sh SLUICE TMPDIR
set -u
sluice=$1 tmp=$2
if ! ls /proc/driver/nvidia/gpus/* >/dev/null 2>&1; then
	echo "no GPU: skipped"
	exit 77
fi
rm -rf "$tmp" && mkdir -p "$tmp"
set -e
cat >"$tmp/shape.json" <<'J'
{"name": "tiny", "hidden": 1024, "heads": 8, "kv_heads": 2, "head_dim": 128, "ffn": 4096, "layers": 4, "vocab": 1000}
J
printf '%s\n' 9000 3000 1200 800 500 4000 >"$tmp/batch.txt"
"$sluice" plan --ranks 4 --ranks-per-node 4 --profile gpt-7b-flexsp --format json -o "$tmp/plan.json" "$tmp/batch.txt"
"$sluice" run-plan --emulate --model "$tmp/shape.json" --profile gpt-7b-flexsp --iters 2 --warmup 1 \
	--report "$tmp/rep.json" --trace-json "$tmp/trace.json" "$tmp/plan.json"
python3 - "$tmp/rep.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["card"], "no card"
for g in r["groups"]:
    assert all(t > 0 for t in g["rank_ms"]), g
    p = g["slowest_rank_parts_ms"]
    assert p["linear"] > 0 and p["attention"] > 0 and p["head"] > 0, p
    # measured = the slowest rank's compute + the transfer the profile leaves exposed
    assert abs(g["measured_compute_ms"] - max(g["rank_ms"])) < 1e-9
    assert g["modeled_transfer_ms"] >= 0 and (g["modeled_transfer_ms"] > 0) == (len(g["ranks"]) > 1)
    assert abs(g["measured_ms"] - g["measured_compute_ms"] - g["modeled_transfer_ms"]) < 1e-9
assert r["measured_step_ms"] >= max(g["measured_ms"] for g in r["groups"])
PY
echo "gpu_emulate: ok"
