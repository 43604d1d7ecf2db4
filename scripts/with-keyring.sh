#!/usr/bin/env bash
# with-keyring.sh CMD...: run CMD where Braid can keep keys in a real Secret Service.
#
# If $DBUS_SESSION_BUS_ADDRESS reaches a bus on which a Secret Service runs with a
# default keyring (a desktop session's gnome-keyring or KWallet), CMD simply runs
# there. Otherwise (a headless machine, root over ssh, CI) this starts a private D-Bus
# session bus and an unlocked gnome-keyring-daemon for the duration of CMD, and stops
# both afterwards.
#
# The private keyring is ephemeral by default: a temp dir and a random password, both
# gone when CMD ends (keys imported meanwhile go with it). To keep it, set
# BRAID_KEYRING_DIR to a directory and BRAID_KEYRING_PASSWORD to its password (the
# keyring is created with that password the first time).
#
# Where scripts/setup.sh made the checkout's venv, CMD runs with it first on PATH, so
# `bash scripts/with-keyring.sh python3 -m benchmarks.NAME` is the venv's python.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"

if (($# == 0)); then
  echo "usage: $0 CMD [ARG...]" >&2
  exit 2
fi

# Exit 0 when a running Secret Service on the current bus holds a default keyring
# (locked or not: a desktop's keyring is the user's, and Braid says how to unlock it).
# Merely activatable is not enough: on a headless session bus (root over ssh with
# dbus-user-session) that would start a gnome-keyring with no keyring, which can only
# create one through a prompt nobody sees. With "unlocked", the keyring must also be
# unlocked (readiness of our own private daemon).
secret_service() {
  timeout 10 python3 - "$@" <<'EOF' 2>/dev/null
import sys
import secretstorage
from jeepney.bus_messages import message_bus
conn = secretstorage.dbus_init()
if not conn.send_and_get_reply(message_bus.NameHasOwner("org.freedesktop.secrets")).body[0]:
    sys.exit(1)
# Collection(), not get_default_collection(): that would try to create a keyring
# (through a prompt nobody sees) when there is none.
locked = secretstorage.Collection(conn).is_locked()
sys.exit(1 if locked and sys.argv[1:] == ["unlocked"] else 0)
EOF
}

if [[ -n "${DBUS_SESSION_BUS_ADDRESS:-}" ]] && secret_service; then
  exec "$@"
fi

for tool in dbus-daemon gnome-keyring-daemon; do
  if ! command -v "$tool" >/dev/null; then
    echo "$0: $tool is not installed; run scripts/setup.sh (or apt-get install dbus-daemon gnome-keyring)" >&2
    exit 2
  fi
done

if [[ -n "${BRAID_KEYRING_DIR:-}" ]]; then
  if [[ -z "${BRAID_KEYRING_PASSWORD:-}" ]]; then
    echo "$0: BRAID_KEYRING_DIR is set, so set BRAID_KEYRING_PASSWORD to its keyring's password too" >&2
    exit 2
  fi
  dir=$BRAID_KEYRING_DIR
  password=$BRAID_KEYRING_PASSWORD
  ephemeral=0
  mkdir -p -m 0700 "$dir"
else
  dir=$(mktemp -d /tmp/braid-keyring.XXXXXX)
  password=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  ephemeral=1
fi
mkdir -p -m 0700 "$dir/data" "$dir/run"

dbus_pid=""
keyring_pid=""
cleanup() {
  [[ -n "$keyring_pid" ]] && kill "$keyring_pid" 2>/dev/null && wait "$keyring_pid" 2>/dev/null
  [[ -n "$dbus_pid" ]] && kill "$dbus_pid" 2>/dev/null
  rm -f "$dir/bus" "$dir/bus.conf"
  if ((ephemeral)); then rm -rf "$dir"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A filesystem socket, not an abstract one: it is reachable from inside network
# namespaces (the lab's client namespace) as well. No service activation: a call that
# reaches the bus before our gnome-keyring owns org.freedesktop.secrets must fail (and
# be retried), not auto-start a second, password-less gnome-keyring that wins the name.
export DBUS_SESSION_BUS_ADDRESS="unix:path=$dir/bus"
cat >"$dir/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>$DBUS_SESSION_BUS_ADDRESS</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
EOF
dbus_pid=$(dbus-daemon --config-file="$dir/bus.conf" --fork --nopidfile --print-pid=1 \
  2>>"$dir/dbus.log")

# --unlock reads the password up to EOF; it creates the login keyring the first time.
XDG_DATA_HOME="$dir/data" XDG_RUNTIME_DIR="$dir/run" \
  gnome-keyring-daemon --foreground --unlock --components=secrets \
  < <(printf %s "$password") >/dev/null 2>>"$dir/keyring.log" &
keyring_pid=$!

deadline=$((SECONDS + 20))
until secret_service unlocked; do
  if ! kill -0 "$keyring_pid" 2>/dev/null || ((SECONDS >= deadline)); then
    echo "$0: gnome-keyring-daemon did not offer an unlocked Secret Service; log: $dir/keyring.log" >&2
    ephemeral=0  # keep the log
    exit 2
  fi
  sleep 0.05
done

rc=0
"$@" || rc=$?
exit "$rc"
