#!/usr/bin/env bash
# Builds the PyInstaller bundle of the tray app (and the whole `braid` command line):
# dist/braid-bundle/braid, a folder that runs on its own, with its Python, Qt and every
# dependency inside: no install, no venv. `--tar` also packs it as
# dist/braid-<version>-linux-<arch>.tar.gz.
#   bash packaging/build-bundle.sh [--out DIR] [--tar]
# Uses $PYTHON (default: the python3 on PATH), which must have Braid installed (its
# metadata is copied for `--version`) and pyinstaller (the test extras): the venv of
# scripts/setup.sh has both.
# The helper is not in it: braid-helper is a root service, from the .deb or a checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$PWD/dist
tar=0
PY=${PYTHON:-python3}
while (($#)); do
  case $1 in
    --out) out=$2; shift 2 ;;
    --tar) tar=1; shift ;;
    *) echo "usage: $0 [--out DIR] [--tar]" >&2; exit 2 ;;
  esac
done
work=$(mktemp -d /tmp/braid-bundle.XXXXXX)
trap 'rm -rf "$work"' EXIT

# --onedir, not --onefile: a tray app starts at every login, and a one-file bundle
# unpacks its 200 MB to /tmp each time. --collect-submodules app: the parts Braid starts
# as `-m MODULE` (braid_bundle.py) are imported by nothing. pyqtgraph.opengl needs
# PyOpenGL, which Braid does not use.
"$PY" -m PyInstaller --noconfirm --onedir --name braid-bundle \
  --distpath "$out" --workpath "$work/build" --specpath "$work" --log-level ERROR \
  --copy-metadata braid --copy-metadata keyring \
  --collect-submodules app --collect-data app \
  --exclude-module tkinter --exclude-module pyqtgraph.opengl \
  packaging/bundle/braid_bundle.py
mv "$out/braid-bundle/braid-bundle" "$out/braid-bundle/braid"
if ((tar)); then
  version=$("$PY" -c 'from app.wire.version import package_version as v; print(v())')
  tarball=$out/braid-$version-linux-$(uname -m).tar.gz
  tar -C "$out" -czf "$tarball" braid-bundle
  echo "$tarball"
fi
echo "$out/braid-bundle/braid"
