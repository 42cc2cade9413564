#!/usr/bin/env bash
# Set up Sightglass on a fresh Debian/Ubuntu machine: a virtualenv in .venv with the package installed.
#   scripts/setup.sh            runtime only (enough for `sightglass demo`)
#   scripts/setup.sh --dev      + test tools, and the real peer servers the tests start
#                               (Prometheus, VictoriaMetrics, Chromium; Debian packages, needs root)
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1

PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
if [[ $DEV == 1 ]]; then
  python -m pip install -q -e '.[dev]'
  if command -v apt-get >/dev/null && [[ $(id -u) == 0 ]]; then
    need=()
    for pkg in prometheus victoria-metrics chromium prometheus-alertmanager postgresql; do
      dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
    done
    if (( ${#need[@]} )); then
      echo "installing ${need[*]} (Debian packages)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    fi
  else
    echo "note: not root or no apt-get: tests that need real Prometheus/VictoriaMetrics/Chromium will skip" >&2
  fi
else
  python -m pip install -q -e .
fi
