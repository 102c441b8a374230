#!/usr/bin/env bash
# Runs deploy/slurm/sluice-job.sbatch as Slurm would run the batch script,
# with the real sluice and sluiced of this build, on this machine: once as a
# one-node job (ipc) and once as a two-node job (tcp + CURVE keys made by the
# script). Slurm itself is not here, so `srun` and `scontrol` are two-line
# stand-ins: srun drops its --options and runs the command; scontrol prints
# the job's node names. The "training" is `sluice submit`, which must get a
# plan from the job's daemon with the endpoint and keys the script exported;
# afterwards the daemon must be gone and the secret keys removed.
# usage: tests/deploy/slurm_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "slurm test: $*" >&2; exit 1; }

mkdir -p "$tmp/shim"
cat >"$tmp/shim/srun" <<'SH'
#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in --*) shift ;; *) break ;; esac; done
SLURM_PROCID=0 exec "$@"
SH
cat >"$tmp/shim/scontrol" <<'SH'
#!/bin/sh
[ "$1 $2" = "show hostnames" ] || { echo "scontrol shim: $*" >&2; exit 2; }
echo "$3" | tr ',' '\n'
SH
chmod +x "$tmp/shim/srun" "$tmp/shim/scontrol"
printf '120000\n4000\n300\n9000\n' >"$tmp/batch.txt"
cat >"$tmp/train.sh" <<'SH'
#!/bin/sh
# The "training": one plan from the job's daemon, as the job's client.
set -e
if [ -n "${SLUICE_SERVER_KEY:-}" ]; then
	# Only the job's key is admitted: a key pair of someone else is not served.
	sluice keygen "$TMPDIR/stranger" >/dev/null
	if sluice status --server-key "$SLUICE_SERVER_KEY" --secret-key "$TMPDIR/stranger.key" \
		--timeout 300 >/dev/null 2>&1; then
		echo "a client with an unlisted key was served" >&2
		exit 1
	fi
	set -- --server-key "$SLUICE_SERVER_KEY" --secret-key "$SLUICE_SECRET_KEY"
fi
echo "endpoint $SLUICE_ENDPOINT"
exec sluice submit "$@" --job slurm-test --ranks 8 --ranks-per-node 8 "$TMPBATCH"
SH
chmod +x "$tmp/train.sh"

run_job() { # NAME NODELIST [ENV...]
	local name=$1 nodes=$2
	shift 2
	mkdir -p "$tmp/$name"
	env "$@" PATH="$tmp/shim:$build/cli:$build/daemon:$PATH" SLURM_JOB_ID=$((4000 + RANDOM % 1000)) \
		SLURM_JOB_NODELIST="$nodes" SLURM_SUBMIT_DIR="$tmp/$name" TMPDIR="$tmp/$name" \
		TMPBATCH="$tmp/batch.txt" SLUICE_READY_S=60 \
		bash "$root/deploy/slurm/sluice-job.sbatch" "$tmp/train.sh" >"$tmp/$name.out" 2>&1 ||
		{ cat "$tmp/$name.out"; fail "$name: the job failed"; }
	grep -q '^sluiced serving job' "$tmp/$name.out" || { cat "$tmp/$name.out"; fail "$name: no daemon"; }
	grep -q '^cap ' "$tmp/$name.out" || { cat "$tmp/$name.out"; fail "$name: no plan printed"; }
	# The daemon went away with the job: nothing of it is left running.
	local f
	for f in /proc/[0-9]*/cmdline; do
		{ tr '\0' ' ' <"$f"; } 2>/dev/null | grep -q "^[^ ]*sluiced .*$tmp/$name" &&
			fail "$name: sluiced still running (${f%/cmdline})"
	done
	echo "$name: ok ($(grep '^endpoint' "$tmp/$name.out"))"
}

# One node: ipc in a private directory, removed afterwards.
run_job one node01
grep -q '^endpoint ipc://' "$tmp/one.out" || fail "one node did not use ipc"
[ -z "$(find "$tmp/one" -name 'sluice-*' -type d)" ] || fail "one node left its socket directory"

# Two nodes: tcp on the first one (here 127.0.0.1) with CURVE.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run_job two 127.0.0.1,node02 SLUICE_PORT="$port"
grep -q "^endpoint tcp://127.0.0.1:$port\$" "$tmp/two.out" || fail "two nodes did not use tcp"
state=$(find "$tmp/two" -maxdepth 1 -name '.sluice-*' -type d)
if [ ! -f "$state/sluiced.pub" ] || [ ! -f "$state/authorized_keys" ]; then fail "no keys in $state"; fi
if [ -e "$state/sluiced.key" ] || [ -e "$state/client.key" ]; then fail "secret keys left in $state"; fi
echo "slurm test passed"
