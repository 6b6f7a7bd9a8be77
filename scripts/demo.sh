#!/usr/bin/env bash
# Set up what the demo needs, then run a simulated zone on this machine (Ctrl-C stops it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh demo
exec .venv/bin/zonewatch-collector demo "$@"
