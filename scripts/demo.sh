#!/usr/bin/env bash
# Set up and run the demo: a simulated AI factory feeding a Sightglass server on an embedded store.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
exec sightglass demo "$@"
