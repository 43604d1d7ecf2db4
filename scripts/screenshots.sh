#!/usr/bin/env bash
# Saves docs/screenshots/{paths,tray,window,apps,settings}.png: the app connected to a lab, on a
# virtual X display (Xvfb) with a real tray host (trayer). As root (the lab needs it).
#   bash scripts/screenshots.sh [--scenario NAME] [--seconds S] [--out DIR]
set -euo pipefail
cd "$(dirname "$0")/.."

for tool in Xvfb trayer xdotool convert display; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run scripts/setup.sh" >&2; exit 2; }
done

# A display number nobody uses (other engineers may run their own).
display=
for n in $(seq 90 140); do
  if [[ ! -e /tmp/.X11-unix/X$n && ! -e /tmp/.X$n-lock ]]; then display=:$n; break; fi
done
[[ -n $display ]] || { echo "no free X display between :90 and :140" >&2; exit 2; }

pids=()
tmp=
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [[ -n $tmp ]] && rm -rf "$tmp"
}
trap cleanup EXIT

Xvfb "$display" -screen 0 1280x800x24 -nolisten tcp >/dev/null 2>&1 &
pids+=($!)
export DISPLAY=$display
unset QT_QPA_PLATFORM WAYLAND_DISPLAY
# xdpyinfo answers once the server accepts clients.
for _ in $(seq 100); do xdpyinfo >/dev/null 2>&1 && break; sleep 0.1; done
xdpyinfo >/dev/null 2>&1 || { echo "Xvfb did not start on $display" >&2; exit 2; }

# A desktop-like background (the root window is black otherwise) and a panel with a tray.
tmp=$(mktemp -d)
convert -size 1280x800 gradient:'#eceff1-#b0bec5' "$tmp/bg.png"
display -window root "$tmp/bg.png" >/dev/null 2>&1 || true  # sets the background, exits 1
trayer --edge top --align right --widthtype request --height 26 --SetDockType true \
  --transparent false >/dev/null 2>&1 &
pids+=($!)

# Only the lab this run builds shows in the menus, not the user's own profiles.
export BRAID_CONFIG_DIR=$tmp/config

# This checkout's app, not whichever Braid the venv has installed (a script run by path
# puts only its own folder, docs/, first on sys.path).
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
bash scripts/with-keyring.sh python3 docs/screenshots.py "$@"
