#!/bin/sh
# Runs "PYTHON ARGS..." with the first of PYTHON and /usr/bin/python3 that can
# import torch (Debian's python3-torch installs for /usr/bin/python3 only);
# exits 77 (ctest: skipped) when neither can.
first=$1
shift
for py in "$first" /usr/bin/python3; do
	if [ -x "$py" ] && "$py" -c 'import torch' 2>/dev/null; then
		exec "$py" "$@"
	fi
done
echo "torch is not importable by $first or /usr/bin/python3: skipped" >&2
exit 77
