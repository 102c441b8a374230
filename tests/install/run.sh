#!/usr/bin/env bash
# Installs a built tree the ways an operator would and uses what was
# installed, nothing from the build tree:
#  1. cmake --install --prefix P, and DESTDIR staging of the same (same files);
#  2. a tiny client (consumer/client.c) built with `pkg-config sluice` and with
#     CMake's find_package(sluice), each run against the installed sluiced;
#  3. systemd-analyze verify of the installed unit (when systemd-analyze exists);
#  4. the installed CLI finds the installed sluice-worker (run-plan on PATH).
# usage: tests/install/run.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
daemon_pid=
cleanup() {
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "install test: $*" >&2; exit 1; }

prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log"
DESTDIR=$tmp/stage cmake --install "$build" --prefix /opt/sluice >"$tmp/stage.log"
for f in bin/sluice bin/sluiced bin/sluice-worker include/sluice/client.h lib/pkgconfig/sluice.pc \
	lib/cmake/sluice/sluiceConfig.cmake lib/systemd/system/sluiced.service etc/sluice/sluiced.conf; do
	[ -e "$prefix/$f" ] || fail "missing $prefix/$f"
	[ -e "$tmp/stage/opt/sluice/$f" ] || fail "DESTDIR staging lacks /opt/sluice/$f"
done
soname=$(objdump -p "$prefix/lib/libsluice.so" | awk '/SONAME/ {print $2}')
[ "$soname" = "libsluice.so.0" ] || fail "SONAME is '$soname', not libsluice.so.0"
grep -q '^ExecStart=/opt/sluice/bin/sluiced --config /opt/sluice/etc/sluice/sluiced.conf$' \
	"$tmp/stage/opt/sluice/lib/systemd/system/sluiced.service" ||
	fail "staged unit does not name the /opt/sluice paths"
echo "installed into $prefix and staged under DESTDIR: same files, SONAME $soname"

# 2. clients built against the installed library only
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
cc -std=c11 -Wall -Werror "$here/consumer/client.c" -o "$tmp/client-pc" \
	$(pkg-config --cflags --libs sluice) -Wl,-rpath,"$prefix/lib"
cmake -S "$here/consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
	-DCMAKE_BUILD_RPATH="$prefix/lib" >"$tmp/consumer.log"
cmake --build "$tmp/consumer" >>"$tmp/consumer.log"
ep=ipc://$tmp/sluiced.sock
"$prefix/bin/sluiced" --endpoint "$ep" --threads 1 --log-level warn &
daemon_pid=$!
for c in "$tmp/client-pc" "$tmp/consumer/client"; do
	out=$("$c" "$ep") || fail "$c: $out"
	case "$out" in "plan 8 "*) echo "$(basename "$(dirname "$c")")/$(basename "$c"): $out" ;;
	*) fail "$c printed '$out'" ;; esac
done
# (ldd's output taken whole: grep -q closing the pipe early would fail it under pipefail)
libs=$(ldd "$tmp/client-pc")
case "$libs" in *"$prefix/lib/libsluice.so.0"*) ;; *) fail "client-pc not linked to the installed library: $libs" ;; esac

# 3. the installed unit
if command -v systemd-analyze >/dev/null; then
	systemd-analyze verify "$prefix/lib/systemd/system/sluiced.service"
	echo "systemd-analyze verify: ok"
else
	echo "systemd-analyze not found: unit not verified"
fi

# 4. the installed CLI finds the installed worker through PATH alone
printf '300\n20\n700\n' >"$tmp/batch.txt"
export PATH="$prefix/bin:$PATH"
unset SLUICE_WORKER
sluice plan --ranks 8 --ranks-per-node 8 --policy static --format json -o "$tmp/plan.json" \
	"$tmp/batch.txt"
sluice run-plan --check "$tmp/plan.json" >"$tmp/run.log" 2>&1 || { cat "$tmp/run.log"; fail "run-plan"; }
echo "run-plan with the installed sluice and sluice-worker: ok"
echo "install test passed"
