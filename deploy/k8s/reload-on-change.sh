#!/bin/sh
# Sends SIGHUP to sluiced whenever its config file's content changes, so a
# ConfigMap edit really reloads the daemon. Runs as a sidecar container in
# the same pod (shareProcessNamespace: true, same user as sluiced).
#
#   reload-on-change.sh [-i SECONDS] [-n NAME] [-v] FILE...
#
#   -i SECONDS  how often to look (default 5; fractions need a sleep that
#               takes them, as GNU coreutils and busybox do)
#   -n NAME     process name to signal, as in /proc/PID/comm (default sluiced)
#   -v          log every check, not only reloads
#
# It compares the files' content (cksum), not their mtime or inode: kubelet
# updates a ConfigMap volume by writing a new directory and atomically
# swapping the `..data` symlink that FILE resolves through, so watching the
# file with inotify misses updates, while re-reading it by path each time
# always sees the current version. A missing or unreadable file (mid-swap,
# or not mounted yet) is skipped until it is readable again. If no process
# of that name is running, the reload is retried on the next check.
# Exits 0 on SIGTERM/SIGINT, 2 on a usage error.
set -u

interval=5
name=sluiced
verbose=0
usage() {
	echo "usage: reload-on-change.sh [-i SECONDS] [-n NAME] [-v] FILE..." >&2
	exit 2
}
while getopts i:n:v opt; do
	case $opt in
	i) interval=$OPTARG ;;
	n) name=$OPTARG ;;
	v) verbose=1 ;;
	*) usage ;;
	esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || usage
case $interval in '' | *[!0-9.]* | *.*.*) echo "reload-on-change.sh: -i $interval is not a number of seconds" >&2; exit 2 ;; esac

log() { echo "reload-on-change: $*" >&2; }

# The files' content digest, or nothing when one of them cannot be read.
digest() {
	for f in "$@"; do
		[ -r "$f" ] || return 1
		cksum <"$f" || return 1
	done
}

# The pids whose command name is $name (never this script's own).
pids() {
	for d in /proc/[0-9]*; do
		pid=${d#/proc/}
		[ "$pid" = "$$" ] && continue
		comm=$(cat "$d/comm" 2>/dev/null) || continue
		[ "$comm" = "$name" ] && echo "$pid"
	done
}

# Exit at once on SIGTERM, even in the middle of a sleep.
sleeper=
trap '[ -n "$sleeper" ] && kill "$sleeper" 2>/dev/null; exit 0' TERM INT

last=
until last=$(digest "$@"); do
	log "waiting for $* to be readable"
	sleep "$interval" & sleeper=$!
	wait "$sleeper"
done
log "watching $* every ${interval}s for changes; SIGHUP goes to '$name'"

while :; do
	sleep "$interval" & sleeper=$!
	wait "$sleeper"
	sleeper=
	now=$(digest "$@") || { [ "$verbose" = 1 ] && log "check: unreadable, skipped"; continue; }
	if [ "$now" = "$last" ]; then
		[ "$verbose" = 1 ] && log "check: unchanged"
		continue
	fi
	targets=$(pids)
	if [ -z "$targets" ]; then
		log "changed, but no process named '$name' is running; will retry"
		continue
	fi
	sent=0
	for pid in $targets; do
		if kill -HUP "$pid" 2>/dev/null; then
			log "changed: sent SIGHUP to $name (pid $pid)"
			sent=1
		else
			log "changed: cannot signal $name (pid $pid)"
		fi
	done
	[ "$sent" = 1 ] && last=$now
done
