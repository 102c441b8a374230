#!/usr/bin/env bash
# Static checks of deploy/ (no container builder or cluster needed):
#  1. every shell script parses (bash -n, or sh -n for #!/bin/sh ones) and,
#     when shellcheck is installed, passes it;
#  2. deploy/docker/Dockerfile installs packages only from the package lists
#     (no package named in it), the runtime stage from runtime.txt on
#     debian:12-slim, runs as a non-root user, exposes nothing, runs sluiced;
#  3. with BUILD_DIR: every shared library the installed binaries and
#     libsluice load directly (ELF NEEDED) comes from a package of
#     runtime.txt or of the slim base image (libc6, libgcc-s1), checked with
#     dpkg -S, so the runtime stage has what it needs.
# usage: tests/deploy/lint.sh [BUILD_DIR [cuda]]   (cuda: a CUDA build, NCCL and cuBLASLt allowed)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
errors=0
err() { echo "deploy lint: $*" >&2; errors=$((errors + 1)); }

# 1. shell scripts
mapfile -t scripts < <(cd "$root" && find deploy tests/deploy bench/run.sh -type f \
	\( -name '*.sh' -o -name '*.sbatch' \) | sort)
[ "${#scripts[@]}" -ge 4 ] || err "found only ${#scripts[@]} scripts: ${scripts[*]}"
have_sc=0
command -v shellcheck >/dev/null && have_sc=1
for s in "${scripts[@]}"; do
	case $(head -n1 "$root/$s") in
	'#!/bin/sh'*) sh -n "$root/$s" || err "$s: sh -n failed" ;;
	*) bash -n "$root/$s" || err "$s: bash -n failed" ;;
	esac
	if [ "$have_sc" = 1 ]; then
		(cd "$root" && shellcheck "$s") || err "$s: shellcheck failed"
	fi
done
echo "shell scripts: ${#scripts[@]} checked (shellcheck: $([ "$have_sc" = 1 ] && echo yes || echo "not installed"))"

# 2. the Dockerfile, one logical line (continuations joined) per instruction
df=$root/deploy/docker/Dockerfile
mapfile -t ins < <(sed -e '/^[[:space:]]*#/d' "$df" | sed -e ':a' -e '/\\$/N; s/\\\n//; ta' | grep -v '^[[:space:]]*$')
stage='' stages=() installs=0
for line in "${ins[@]}"; do
	read -r op rest <<<"$line"
	case ${op^^} in
	FROM) stage=${rest##* }; stages+=("${rest%% *} $stage") ;;
	EXPOSE) err "Dockerfile exposes a port ($rest); nothing should be by default" ;;
	RUN)
		if [[ $rest == *"apt-get install"* ]]; then
			installs=$((installs + 1))
			# every install takes its names from one list and nothing else
			[[ $rest =~ grep\ -hv\ \'\^#\'\ /tmp/packages/([a-z]+)\.txt\ \|\ xargs\ apt-get\ install\ -y\ --no-install-recommends\ *(\&\&|$) ]] ||
				err "stage $stage: an apt-get install not fed only by a package list: $rest"
			want=build
			[ "$stage" = runtime ] && want=runtime
			[ "${BASH_REMATCH[1]:-}" = "$want" ] ||
				err "stage $stage installs from ${BASH_REMATCH[1]:-?}.txt, not $want.txt"
		fi ;;
	COPY) if [[ $rest == deploy/packages/* ]]; then
		[ -f "$root/${rest%% *}" ] || err "Dockerfile copies missing ${rest%% *}"
	fi ;;
	esac
done
[ "$installs" = 2 ] || err "Dockerfile has $installs apt-get installs, expected 2 (build, runtime)"
[ "${stages[*]}" = "debian:12 build debian:12-slim runtime" ] ||
	err "Dockerfile stages are '${stages[*]}', expected debian:12 build, debian:12-slim runtime"
last_user=$(printf '%s\n' "${ins[@]}" | awk 'toupper($1) == "USER" {u = $2} END {print u}')
case $last_user in '' | root | 0 | 0:*) err "the runtime stage runs as '${last_user:-root}'" ;; esac
printf '%s\n' "${ins[@]}" | grep -q '^ENTRYPOINT \["/usr/local/bin/sluiced"\]' ||
	err "the entry point is not sluiced"
printf '%s\n' "${ins[@]}" | grep -q '^COPY --from=build /staging/usr/local/ /usr/local/' ||
	err "the runtime stage does not take the build stage's installed tree"
# Package lists: one name per line, names as Debian spells them.
for l in build test runtime; do
	bad=$(grep -v '^#' "$root/deploy/packages/$l.txt" | grep -Ev '^[a-z0-9][a-z0-9+.-]+$' || true)
	[ -z "$bad" ] || err "deploy/packages/$l.txt: not a package name: $bad"
done
echo "Dockerfile: ${#ins[@]} instructions, stages ${stages[*]}, user $last_user"

# 3. what the installed binaries load comes from runtime.txt
if [ $# -ge 1 ]; then
	build=$(cd "$1" && pwd)
	if ! command -v dpkg >/dev/null || ! command -v objdump >/dev/null; then
		echo "dpkg or objdump not found: runtime libraries not checked"
	else
		tmp=$(mktemp -d)
		trap 'rm -rf "$tmp"' EXIT
		DESTDIR=$tmp cmake --install "$build" --prefix /usr/local >/dev/null
		mapfile -t allowed < <(grep -hv '^#' "$root/deploy/packages/runtime.txt")
		allowed+=(libc6 libgcc-s1)
		# A CUDA build (the Dockerfile's is not one) also loads the CUDA
		# toolkit's NCCL and cuBLASLt, which come with NVIDIA's images, not
		# from Debian, and the C++ runtime they need.
		cuda=${2:-}
		[ "$cuda" = cuda ] && allowed+=(libstdc++6)
		n=0
		for f in "$tmp"/usr/local/bin/* "$tmp"/usr/local/lib/libsluice.so.*.*; do
			[ -f "$f" ] || continue
			[ "$(od -An -tx1 -N4 "$f" | tr -d ' \n')" = 7f454c46 ] || continue # ELF
			for lib in $(objdump -p "$f" | awk '$1 == "NEEDED" {print $2}'); do
				case $lib in libsluice.so.*) continue ;; esac
				if [ "$cuda" = cuda ]; then
					case $lib in libnccl.so.* | libcublasLt.so.* | libcublas.so.* | libcudart.so.*) continue ;; esac
				fi
				path=$(ldconfig -p | awk -v l="$lib" '$1 == l && p == "" {p = $NF} END {print p}')
				[ -n "$path" ] || { err "$(basename "$f") needs $lib, not found by ldconfig"; continue; }
				pkg=$(dpkg -S "$(readlink -f "$path")" 2>/dev/null || dpkg -S "$path" 2>/dev/null || true)
				pkg=${pkg%%:*}
				if ! printf '%s\n' "${allowed[@]}" | grep -x "$pkg" >/dev/null; then
					err "$(basename "$f") needs $lib from package '${pkg:-unknown}', not in runtime.txt"
				fi
				n=$((n + 1))
			done
		done
		[ "$n" -gt 0 ] || err "no shared libraries found in the installed binaries"
		echo "runtime libraries: $n direct dependencies, all from runtime.txt or the base image"
	fi
fi
[ "$errors" = 0 ] || { echo "deploy lint: $errors problem(s)" >&2; exit 1; }
echo "deploy lint passed"
