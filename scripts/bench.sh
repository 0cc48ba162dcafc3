#!/usr/bin/env bash
# Runs the benchmarks (all, or those whose name contains an argument) inside a
# loopback-only network namespace.  Run scripts/test.sh once first: it installs
# the peers and the virtualenv the benchmarks use.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ -x .venv/bin/python ]] || { echo "run scripts/test.sh once first (it makes .venv)" >&2; exit 1; }
if unshare -n true 2>/dev/null; then netns=(unshare -n); else netns=(unshare -rn); fi
exec "${netns[@]}" sh -c 'ip link set lo up && exec .venv/bin/python benchmarks/run.py "$@"' bench "$@"
