# Sourced by the other scripts: the venv scripts/setup.sh makes goes first on PATH, so
# `python3`, `braid` and `braid-helper` are this checkout's (the lab finds braid-helper
# on PATH). Without a venv (a checkout set up another way) nothing changes.
BRAID_VENV=${BRAID_VENV:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/.venv}
if [[ -x $BRAID_VENV/bin/python3 ]]; then
  export PATH="$BRAID_VENV/bin:$PATH"
fi
