#!/usr/bin/env bash
# `sluice profile` on the GPU machine in one device call (docs/fidelity.md):
# measures the gpt-7b shape and a smaller one (profiles/shape-gpt-1.3b.json),
# writing the profile files and logs under $OUT. Runs a prebuilt `sluice`
# (BIN, default .gpubin) with Debian's runtime libraries from .debs/ (the
# GPU machine lacks ZeroMQ, GLPK, protobuf-c and jansson).
# About 4 minutes per model with the default settling (2 s of a layer's load
# before each point; SETTLE_MS=500 takes about 70 s; one device call holds
# at most 600 s).
# usage: OUT=DIR [BIN=DIR] [REPS=7] [SETTLE_MS=2000] bash bench/gpu/profile.sh [MODEL...]
set -u
cd "$(dirname "$0")/../.."
REPS=${REPS:-7}
SETTLE_MS=${SETTLE_MS:-2000}
. bench/gpu/env.sh
{
	nvidia-smi --query-gpu=index,name,memory.total,driver_version,clocks.max.sm --format=csv
	date -u +%FT%TZ
	ldd "$BIN/sluice" | grep -E 'not found|cublas|nccl'
} 2>&1 | tee "$OUT/gpu.txt"
models=${*:-gpt-7b profiles/shape-gpt-1.3b.json}
for m in $models; do
	tag=$(basename "$m" .json)
	tag=${tag#shape-}
	echo "### sluice profile --model $m" | tee -a "$OUT/profile.log"
	timeout -k 5 420 "$BIN/sluice" profile --model "$m" --reps "$REPS" --settle-ms "$SETTLE_MS" --name "gpu-$tag" \
		-o "$OUT/$tag.json" 2>&1 | tee -a "$OUT/profile.log"
	echo "### rc=${PIPESTATUS[0]}" | tee -a "$OUT/profile.log"
done
