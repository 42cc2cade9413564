#!/usr/bin/env bash
# Set up (scripts/setup.sh --dev) and run every test: lint, type check and pytest are all in the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
. .venv/bin/activate
python -m pytest "$@"
