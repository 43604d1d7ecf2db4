#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite: lint, types, tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "== ruff"; python3 -m ruff check app tests benchmarks docs
echo "== mypy --strict app"; python3 -m mypy
echo "== pytest"; exec python3 -m pytest "$@"
