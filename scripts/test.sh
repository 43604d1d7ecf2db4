#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the whole test suite in Braid's venv: lint, types,
# tests (the .deb and the PyInstaller bundle are built and tried by tests/packaging).
# Each step says how long it took. Arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

step() {
  local name=$1 start=$EPOCHREALTIME
  shift
  echo "== $name"
  "$@"
  awk -v n="$name" -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "== %s: %.1f s\n", n, b - a }'
}

step "setup" bash scripts/setup.sh
source scripts/venv.sh
step "ruff" python3 -m ruff check app tests benchmarks docs
step "mypy --strict app" python3 -m mypy
step "pytest" python3 -m pytest "$@"
