#!/usr/bin/env bash
# Installs everything Braid and its tests need on Debian 12, as root. Idempotent, and a
# second run with nothing changed takes about a second (it checks, installs nothing).
#
# Braid goes into a virtual environment, not into the system Python: .venv in this
# checkout (BRAID_VENV to put it elsewhere), made with Debian's own python3 and
# python3-venv, holding an editable install of this tree with its test tools. `braid`
# and `braid-helper` are linked into /usr/local/bin (BRAID_BIN_DIR), so they are on
# root's and every user's PATH. This is the install for working on Braid, and from
# source; the desktop install is the .deb (packaging/build-deb.sh, docs/install.md).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
VENV=${BRAID_VENV:-$REPO/.venv}
BIN_DIR=${BRAID_BIN_DIR:-/usr/local/bin}

APT_PACKAGES=(
  python3 python3-venv
  wireguard-go wireguard-tools nftables iproute2 procps psmisc util-linux conntrack
  mptcpize  # braid run --mptcp: makes a program's TCP sockets MPTCP (docs/multipath.md)
  dbus-daemon dbus-user-session gnome-keyring
  xvfb trayer x11-utils imagemagick xdotool fonts-dejavu-core
  libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0
  libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-xkb1
  # packaging/build-deb.sh and its test: dpkg-deb is in dpkg; these check the result
  desktop-file-utils systemd
)
# One dpkg-query for all: a package it does not know is simply not in what it prints.
installed=$(dpkg-query -W -f='${Package} ${Status}\n' "${APT_PACKAGES[@]}" 2>/dev/null \
  | awk '/ ok installed$/ { print $1 }' || true)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  grep -qxF "$p" <<<"$installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends: plain wireguard-tools would pull a kernel image.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# braid-helper's socket is group braid, mode 0660: its members may use it.
groupadd -f --system braid

# The venv, from Debian's python3 (not whichever python3 is first on PATH: the .deb runs
# on Debian's too). Made again if it is broken (its python gone or replaced).
if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' 2>/dev/null; then
  rm -rf "$VENV"
  /usr/bin/python3 -m venv "$VENV"
fi
# pip runs only when what it would install changed: pyproject.toml (the dependencies and
# the entry points; the code itself is an editable install), or the tree the venv is for.
stamp=$VENV/.braid-setup
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $REPO"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$REPO[test]"
  echo "$want" >"$stamp"
fi

mkdir -p "$BIN_DIR"
for cmd in braid braid-helper; do
  ln -sfn "$VENV/bin/$cmd" "$BIN_DIR/$cmd"
done
