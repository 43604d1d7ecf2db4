#!/usr/bin/env bash
# Installs everything Braid and its tests need on Debian 12, as root. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  wireguard-go wireguard-tools nftables iproute2 procps psmisc util-linux conntrack
  dbus-daemon dbus-user-session gnome-keyring
  xvfb trayer x11-utils imagemagick xdotool fonts-dejavu-core
  libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0
  libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-xkb1
)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
# Debian's own python3 comes without pip (a minimal image without python3 at all).
python3 -m pip --version >/dev/null 2>&1 || missing+=(python3 python3-pip)
if ((${#missing[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends: plain wireguard-tools would pull a kernel image.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# braid-helper's socket is group braid, mode 0660: its members may use it.
groupadd -f --system braid

# Debian 12 marks its python3 externally managed (PEP 668) and pip then refuses to
# install. Braid is a system-wide install on purpose (braid-helper is a root service),
# so as root it goes where pip puts it: /usr/local. Other pythons ignore the variable.
PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install -q --disable-pip-version-check -e '.[test]'
