#!/usr/bin/env bash
# `sluice profile` on a GPU, small shape and few points: it must measure,
# fit and write a profile that `sluice plan` takes, with the card in its
# provenance and every measured time positive. Exit 77 (skipped) without a GPU.
# usage: gpu_profile.sh SLUICE TMPDIR
set -u
sluice=$1 tmp=$2
if ! ls /proc/driver/nvidia/gpus/* >/dev/null 2>&1; then
	echo "no GPU: skipped"
	exit 77
fi
rm -rf "$tmp" && mkdir -p "$tmp"
set -e
"$sluice" profile --hidden 1024 --heads 8 --kv-heads 2 --head-dim 128 --ffn 4096 --layers 4 \
	--vocab 1000 --tokens 512,1024,2048 --hop-lens 256,512,1024 --ring-sizes 1,2 --reps 3 \
	--settle-ms 100 --name gpu-test -o "$tmp/p.json"
python3 - "$tmp/p.json" <<'PY'
import json, sys
p = json.load(open(sys.argv[1]))
c = p["calibration"]
assert c["provenance"]["card"], "no card"
assert c["provenance"]["settle"] == "layer 100 ms", c["provenance"]
m = c["measurements"]
assert len(m["gemm_per_layer"]) == 3 and len(m["attn_hops"]) == 3 + 3 * 3
assert all(x["ms"] > 0 for x in m["gemm_per_layer"] + m["lm_head"])
assert all(h["fwd_ms"] > 0 and h["bwd_ms"] > 0 for h in m["attn_hops"])
assert m["d2h_gbps"] > 0 and m["h2d_gbps"] > 0 and m["group_fixed_ms"] > 0
assert p["alpha1"] > 0 and p["alpha2"] > 0
PY
echo 1000,2000,4000 | "$sluice" plan --profile "$tmp/p.json" --ranks 2 --ranks-per-node 2 >"$tmp/plan"
echo "gpu_profile: ok"
