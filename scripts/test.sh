#!/usr/bin/env bash
# Installs everything the test suite needs (Debian packages, a virtualenv with
# the SDK and its test extras) and runs the whole suite inside a private
# network namespace whose only interface is loopback, so no test can reach
# anything off this machine.  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
while read -r pkg; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done < scripts/debian-packages.txt
if ((${#need[@]})); then
    echo "== installing Debian packages: ${need[*]}"
    sudo_cmd=""; [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}"
    # Debian starts some daemons on install; the tests start their own.
    for svc in kamailio coturn turnserver dnsmasq; do
        $sudo_cmd systemctl disable --now "$svc" >/dev/null 2>&1 || true
        $sudo_cmd pkill -x "$svc" >/dev/null 2>&1 || true
    done
else
    echo "== Debian packages already installed: $(grep -v '^#' scripts/debian-packages.txt | xargs)"
fi

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || { echo "Python 3.11 or newer is needed (found $("$PYTHON" --version))" >&2; exit 1; }
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
echo "== installing the SDK and its test extras into .venv"
.venv/bin/pip install -q --disable-pip-version-check -e '.[test]'
.venv/bin/pip list --disable-pip-version-check 2>/dev/null | sed 's/^/   /'

echo "== ruff"
.venv/bin/ruff check src tests benchmarks

echo "== pytest (in a loopback-only network namespace)"
if unshare -n true 2>/dev/null; then
    netns=(unshare -n)
elif unshare -rn true 2>/dev/null; then
    netns=(unshare -rn)
else
    echo "cannot create a network namespace (unshare -n); run as root" >&2
    exit 1
fi
exec "${netns[@]}" sh -c 'ip link set lo up && exec .venv/bin/python -m pytest "$@"' pytest "$@"
