#!/usr/bin/env bash
# The demo, as root on Debian 12: set up (scripts/setup.sh), build the lab on the cn-us
# scenario (with the single-path baseline through the direct US gateway), bring Braid up
# on it, compare what a call would see through Braid and through the baseline, then show
# the live paths: the tray app where a display exists, `braid status --watch` where none
# does. Ctrl-C (or BRAID_DEMO_SECONDS elapsing) takes Braid and the lab down again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/venv.sh

if [[ "${1:-}" != "--inside-keyring" ]]; then
  # Braid keeps WireGuard keys in a Secret Service; a headless root shell has none,
  # so the demo runs inside a private, throwaway one.
  exec bash scripts/with-keyring.sh bash "$0" --inside-keyring
fi

LAB=${BRAID_LAB:-lab}
SECONDS_TO_RUN=${BRAID_DEMO_SECONDS:-0}

cleanup() {
  trap - EXIT INT TERM
  echo
  echo "== taking Braid and the lab down"
  braid down --lab "$LAB" || true
  braid lab down --name "$LAB" || true
}
trap cleanup EXIT INT TERM

echo "== building the lab '$LAB' on the cn-us scenario (baseline: a plain tunnel through 'us')"
braid lab down --name "$LAB" >/dev/null 2>&1 || true
braid lab up --name "$LAB" --scenario cn-us --baseline us

echo "== bringing Braid up on the lab"
braid up --lab "$LAB"
braid status --lab "$LAB"

echo "== a 30 fps-like call for 15 s: through the single-path baseline, then through Braid"
braid lab stream --name "$LAB" --baseline --pps 100 --duration 15 &
base_pid=$!
braid lab stream --name "$LAB" --pps 100 --duration 15
wait "$base_pid"

echo "== live paths (Ctrl-C to stop)"
if [[ -n "${DISPLAY:-}" ]]; then
  # The tray app attaches to the engine `braid up` runs (one engine, many views).
  braid app --lab "$LAB" --paths
elif ((SECONDS_TO_RUN > 0)); then
  timeout "$SECONDS_TO_RUN" braid status --lab "$LAB" --watch || true
else
  braid status --lab "$LAB" --watch
fi
