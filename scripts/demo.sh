#!/usr/bin/env bash
# Sets up (scripts/setup.sh), builds the lab on the cn-us scenario and brings Braid up on it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "demo: not wired yet" >&2
exit 1
