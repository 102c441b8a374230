#!/bin/sh
# deploy/k8s/reload-on-change.sh against real processes and a ConfigMap-like
# volume: the config file is a symlink through `..data` to a timestamped
# directory, updated as kubelet does it (new directory, `..data` swapped by an
# atomic rename). The "daemon" is a shell script named like sluiced would be
# (its /proc comm is its file name) that counts the SIGHUPs it gets.
# Every wait is for an event (the counter, or further checks in the log),
# bounded by a deadline; nothing depends on how fast the machine is.
# usage: tests/deploy/reload_test.sh
set -eu
root=$(cd "$(dirname "$0")/../.." && pwd)
script=$root/deploy/k8s/reload-on-change.sh
tmp=$(mktemp -d)
name=slrt$$ # the process name the reloader looks for (unique on this host)
daemon=
reloader=
cleanup() {
	[ -n "$reloader" ] && kill "$reloader" 2>/dev/null
	[ -n "$daemon" ] && kill "$daemon" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
	echo "reload test: $*" >&2
	[ -f "$tmp/reloader.log" ] && tail -20 "$tmp/reloader.log" >&2
	exit 1
}

# wait_for DESCRIPTION COMMAND...: until COMMAND succeeds, at most 60 s.
wait_for() {
	what=$1
	shift
	i=0
	until "$@"; do
		i=$((i + 1))
		[ "$i" -le 1200 ] || fail "timed out waiting for $what"
		sleep 0.05
	done
}
hups() { cat "$tmp/hups" 2>/dev/null || echo 0; }
hups_are() { [ "$(hups)" = "$1" ]; }
checks() { grep -c 'check\|changed' "$tmp/reloader.log" || true; }
# settle: at least two more completed checks from now on.
settle() {
	target=$(($(checks) + 2))
	wait_for "two more checks" sh -c "[ \$(grep -c 'check\\|changed' '$tmp/reloader.log') -ge $target ]"
}

start_daemon() {
	rm -f "$tmp/hups" "$tmp/ready"
	cat >"$tmp/$name" <<SH
#!/bin/sh
n=0
trap 'n=\$((n + 1)); echo \$n >"$tmp/hups.new"; mv "$tmp/hups.new" "$tmp/hups"' HUP
trap 'exit 0' TERM
touch "$tmp/ready"
while :; do sleep 1 & wait \$! || true; done
SH
	chmod +x "$tmp/$name"
	"$tmp/$name" &
	daemon=$!
	wait_for "the daemon to start" test -e "$tmp/ready"
	[ "$(cat "/proc/$daemon/comm")" = "$name" ] || fail "daemon comm is $(cat "/proc/$daemon/comm")"
}

# kubelet's layout: cfg/sluiced.conf -> ..data/sluiced.conf, ..data -> ..TS
vol=$tmp/cfg
mkdir -p "$vol/..v1"
echo "threads 2" >"$vol/..v1/sluiced.conf"
ln -s ..v1 "$vol/..data"
ln -s ..data/sluiced.conf "$vol/sluiced.conf"
swap() { # VERSION CONTENT: publish a new version as kubelet does
	old=$(readlink "$vol/..data")
	mkdir "$vol/..$1"
	printf '%s\n' "$2" >"$vol/..$1/sluiced.conf"
	ln -s "..$1" "$vol/..data_tmp"
	mv -T "$vol/..data_tmp" "$vol/..data"
	rm -rf "${vol:?}/$old"
}

# usage errors exit 2
set +e
sh "$script" >/dev/null 2>&1; rc1=$?
sh "$script" -i x "$vol/sluiced.conf" >/dev/null 2>&1; rc2=$?
set -e
if [ "$rc1" != 2 ] || [ "$rc2" != 2 ]; then fail "usage errors exit $rc1, $rc2 (want 2)"; fi

start_daemon
sh "$script" -i 0.05 -n "$name" -v "$vol/sluiced.conf" 2>"$tmp/reloader.log" &
reloader=$!
wait_for "the reloader to start" grep -q watching "$tmp/reloader.log"
settle
hups_are 0 || fail "SIGHUP without a change"

# 1. the file edited in place
echo "threads 3" >>"$vol/..v1/sluiced.conf"
wait_for "SIGHUP after an in-place edit" hups_are 1

# 2. kubelet's atomic swap of ..data
swap v2 "threads 4"
wait_for "SIGHUP after the ..data swap" hups_are 2

# 3. a swap to the same content is not a change
swap v3 "threads 4"
settle
hups_are 2 || fail "SIGHUP after a swap that changed nothing"

# 4. the file missing for a while (mid-update), then back with new content
rm "$vol/..data"
settle
hups_are 2 || fail "SIGHUP while the file was missing"
kill -0 "$reloader" || fail "the reloader died while the file was missing"
ln -s ..v3 "$vol/..data"
echo "threads 5" >"$vol/..v3/sluiced.conf"
wait_for "SIGHUP after the file came back changed" hups_are 3

# 5. no daemon running when the change comes: delivered once it is back
kill "$daemon"
wait "$daemon" || true
daemon=
swap v4 "threads 6"
wait_for "the reloader to notice there is no process" grep -q 'no process named' "$tmp/reloader.log"
start_daemon
wait_for "SIGHUP to the restarted daemon" hups_are 1
settle
hups_are 1 || fail "more than one SIGHUP for one change"

# SIGTERM stops it promptly with status 0
kill "$reloader"
set +e
wait "$reloader"
rc=$?
set -e
reloader=
[ "$rc" = 0 ] || fail "reloader exited $rc on SIGTERM"
echo "reload test passed"
