#!/usr/bin/env bash
# Builds the Debian package of this checkout: dist/braid_<version>_<arch>.deb.
#   bash packaging/build-deb.sh [--out DIR] [--compress zstd|xz|gzip|none]
# On Debian 12 (its python3 is the one the package runs on), from the project alone:
# Braid and its Python dependencies from PyPI go into a private venv, /usr/lib/braid/venv,
# so the system Python is untouched and nothing is downloaded at install time. Needs
# python3-venv, dpkg-deb (scripts/setup.sh installs both) and a pip to run (that of
# $PYTHON, default the python3 on PATH: the checkout's venv has one); root is not needed
# (dpkg-deb --root-owner-group makes every file root's). What goes where: docs/install.md.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
out=$REPO/dist
compress=zstd  # dpkg >= 1.21.18 (Debian 12) reads it; xz: 28 % smaller, 50x slower here
while (($#)); do
  case $1 in
    --out) out=$2; shift 2 ;;
    --compress) compress=$2; shift 2 ;;
    *) echo "usage: $0 [--out DIR] [--compress zstd|xz|gzip|none]" >&2; exit 2 ;;
  esac
done

PY=/usr/bin/python3  # Debian's: the venv's python is a link to it on the target too
PIP_PY=${PYTHON:-python3}  # runs pip (--python): the package itself carries no pip
LIB=/usr/lib/braid
version=$("$PY" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
arch=$(dpkg --print-architecture)  # numpy and Qt are compiled: one architecture
pyver=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
pynext=$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1] + 1}")')

stage=$(mktemp -d /tmp/braid-deb.XXXXXX)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
venv=$root$LIB/venv

echo "== venv: braid $version and its dependencies"
"$PY" -m venv --without-pip "$venv"
"$PIP_PY" -m pip --python "$venv/bin/python" install -q --disable-pip-version-check \
  --no-compile "$REPO"
rm -f "$venv"/bin/activate* "$venv"/lib/python*/site-packages/*.dist-info/direct_url.json
# The venv was made at $venv and runs at $LIB/venv: scripts' #! lines and pyvenv.cfg say
# where. Python finds its venv from its own path, so nothing else needs to know.
grep -rlI --null -F "$root" "$venv" | xargs -0 -r sed -i "s|$root||g"
# Byte code with the installed paths (tracebacks name the real files), so no user ever
# needs write access here and the first start is not a compile. PySide6's deploy tool
# templates (scripts/deploy_lib) are not Python and never imported.
"$venv/bin/python" -m compileall -q -j 0 -s "$root" -p / -x '/PySide6/scripts/deploy_lib/' \
  "$venv/lib"

echo "== files"
install -d "$root/usr/bin"
ln -s "../lib/braid/venv/bin/braid" "$root/usr/bin/braid"
ln -s "../lib/braid/venv/bin/braid-helper" "$root/usr/bin/braid-helper"
install -Dm644 packaging/braid-helper.service "$root/lib/systemd/system/braid-helper.service"
install -Dm644 resources/braid.desktop "$root/usr/share/applications/braid.desktop"
install -Dm644 resources/icons/braid.svg "$root/usr/share/icons/hicolor/scalable/apps/braid.svg"
doc=$root/usr/share/doc/braid
install -Dm644 -t "$doc" README.md docs/*.md
install -Dm644 -t "$doc/screenshots" docs/screenshots/*.png
install -Dm644 packaging/copyright "$doc/copyright"

echo "== control"
install -d "$root/DEBIAN"
for script in postinst prerm postrm; do
  install -m755 "packaging/debian/$script" "$root/DEBIAN/$script"
done
deps=(
  "python3 (>= $pyver)" "python3 (<< $pynext)"
  # the helper: userspace WireGuard (no kernel module needed), nftables, netlink
  wireguard-go wireguard-tools nftables iproute2
  # what the compiled parts of the venv link to (Qt, numpy, ...): PySide6's wheels bring
  # Qt itself, not these. tests/packaging/test_deb.py checks this list against the
  # libraries the installed app really loads.
  libc6 libgcc-s1 libstdc++6 zlib1g libzstd1
  libegl1 libgl1 libglib2.0-0 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libfreetype6
  libdbus-1-3 libx11-6 libx11-xcb1 libxcb1 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1
  libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 libxcb-image0
  libxcb-xkb1 libxcb-render0 libxcb-shm0 libxcb-sync1 libxcb-xfixes0 libxcb-util1
)
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
{
  echo "Package: braid"
  echo "Version: $version"
  echo "Architecture: $arch"
  echo "Maintainer: Braid developers <braid@localhost>"
  echo "Installed-Size: $size"
  echo "Section: net"
  echo "Priority: optional"
  echo "Depends: $(IFS=,; echo "${deps[*]}" | sed 's/,/, /g')"
  # Keys live in a Secret Service; any of these provides one.
  # mptcpize: only braid run --mptcp needs it (it says so when it is missing).
  echo "Recommends: gnome-keyring | kwalletmanager | keepassxc, mptcpize"
  echo "Description: multi-path WireGuard VPN client for Linux desktops"
  echo " Braid keeps several WireGuard tunnels up at once to regional gateways, measures"
  echo " every path all the time and steers each class of traffic onto the path that"
  echo " serves it best; when every path is gone, traffic is blocked rather than leaked."
  echo " This package holds the tray app and command line (braid), the privileged helper"
  echo " (braid-helper, a systemd service) and Braid's Python dependencies in a private"
  echo " virtual environment under $LIB."
} >"$root/DEBIAN/control"

mkdir -p "$out"
deb=$out/braid_${version}_${arch}.deb
dpkg-deb --root-owner-group -Z"$compress" --build "$root" "$deb" >/dev/null
echo "$deb"
