#!/usr/bin/env bash
# gpu_run_plan_N: `sluice run-plan --backend cuda --check` of a real plan on
# N local GPUs (the worker's fp64 reference checks every rank's outputs).
# usage: run_plan.sh SLUICE SLUICE_WORKER NRANKS POLICY BATCH PROFILE; exits 77
# (skipped) with fewer than NRANKS GPUs.
set -euo pipefail
sluice=$1 worker=$2 n=$3 policy=$4 batch=$5 profile=$6
have=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "${have:-0}" -lt "$n" ]; then
	echo "${have:-0} GPU(s), $n needed: skipped"
	exit 77
fi
export NCCL_NVLS_ENABLE=0 SLUICE_WORKER=$worker
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$sluice" plan --ranks "$n" --ranks-per-node "$n" --policy "$policy" --profile "$profile" \
	--format json -o "$tmp/plan.json" "$batch"
"$sluice" run-plan --backend cuda --check --heads 4 --kv-heads 2 --head-dim 128 \
	--profile "$profile" --iters 2 --warmup 1 --seed "$RANDOM" "$tmp/plan.json"
