"""Session-wide set-up shared by every area's tests.

The whole session gets a real, private, unlocked Secret Service: its own D-Bus session
bus (dbus-daemon) and its own gnome-keyring-daemon, whose keyring files live in a temp
dir and whose password is random. Braid finds it the ordinary way (keyring picks the
Secret Service backend because it answers on $DBUS_SESSION_BUS_ADDRESS), so tests
exercise exactly the code path a desktop user gets. It also points BRAID_CONFIG_DIR and
the XDG dirs at temp dirs, so no test reads or writes the real user's profiles, and
sets QT_QPA_PLATFORM=offscreen. XDG_STATE_HOME too: Braid's log file
(app/core/logs.py) goes to the session's temp dir, never to ~/.local/state.

Subprocesses (``braid ...``) inherit all of this through the environment. The bus
listens on a filesystem socket (not an abstract one), so it is reachable from inside
network namespaces too.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import app.lab.register  # noqa: F401  (lab targets, as the CLI has them)
from app.lab import topology
from app.lab.topology import LabInfo
from tests.util import unique_name, wait_until

# Before anything imports Qt (pytest-qt creates its QApplication lazily, but plugins
# and collection may import PySide6 first).
os.environ["QT_QPA_PLATFORM"] = "offscreen"


# A session bus like Debian's session.conf but with no service activation: a call that
# reaches the bus before our gnome-keyring owns org.freedesktop.secrets must fail (and be
# retried), not auto-start a second, password-less gnome-keyring that then wins the name.
_BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <keep_umask/>
  <listen>{address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@dataclass
class KeyringSession:
    root: Path  # temp dir holding the bus socket and keyring files
    bus_address: str
    config_dir: Path  # BRAID_CONFIG_DIR for the session
    procs: list[subprocess.Popen[bytes]]  # dbus-daemon, then gnome-keyring-daemon
    restarts: int = 0


def _secret_service_ready() -> bool:
    """True when the Secret Service answers and its default collection is unlocked."""
    import secretstorage

    conn = secretstorage.dbus_init()
    try:
        if not secretstorage.check_service_availability(conn):
            return False
        # Not get_default_collection(): before gnome-keyring has made the login keyring
        # from the password, that would ask it to create one, via a prompt nobody sees.
        return not secretstorage.Collection(conn).is_locked()
    finally:
        conn.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _start_keyringd(root: Path, address: str, data: Path) -> subprocess.Popen[bytes]:
    """An unlocked gnome-keyring on the bus at ``address``, its keyring under ``data``."""
    env = {
        **os.environ,
        "DBUS_SESSION_BUS_ADDRESS": address,
        "XDG_DATA_HOME": str(data),  # keyring files: <data>/keyrings/
        "XDG_RUNTIME_DIR": str(root / "run"),
        "HOME": str(root),
    }
    with (root / "keyring.log").open("ab") as log:
        keyringd = subprocess.Popen(
            ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=log, env=env,
        )
    try:
        assert keyringd.stdin is not None
        # --unlock reads the password up to EOF and creates the login keyring with it.
        keyringd.stdin.write(secrets.token_hex(16).encode())
        keyringd.stdin.close()
        wait_until(_secret_service_ready, timeout=20, interval=0.05,
                   message="gnome-keyring-daemon did not offer an unlocked Secret Service",
                   ignore=(Exception,))
    except BaseException:
        _stop(keyringd)
        raise
    return keyringd


def _start_keyring(root: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """Start a private session bus and an unlocked gnome-keyring on it."""
    for tool in ("dbus-daemon", "gnome-keyring-daemon"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed: run scripts/setup.sh (apt package "
                               f"{'dbus-daemon' if tool == 'dbus-daemon' else 'gnome-keyring'})")
    address = f"unix:path={root / 'bus'}"
    config = root / "bus.conf"
    config.write_text(_BUS_CONFIG.format(address=address))
    with (root / "dbus.log").open("wb") as log:
        # Its harmless "Failed to set fd limit" chatter goes to a log, not the test output.
        dbus = subprocess.Popen(
            ["dbus-daemon", f"--config-file={config}", "--nofork", "--nopidfile",
             "--print-address=1"],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, stderr=log,
        )
    procs: list[subprocess.Popen[bytes]] = [dbus]
    try:
        assert dbus.stdout is not None
        # dbus-daemon prints its address once it listens: that line is the readiness signal.
        printed = dbus.stdout.readline().decode().strip()
        if not printed:
            raise RuntimeError("dbus-daemon exited before printing its address")
        os.environ["DBUS_SESSION_BUS_ADDRESS"] = address
        procs.append(_start_keyringd(root, address, root / "data"))
    except BaseException:
        for proc in reversed(procs):
            _stop(proc)
        raise
    return address, procs


@pytest.fixture(scope="session", autouse=True)
def keyring_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyringSession]:
    """The session's private keyring, config and XDG dirs (see the module docstring)."""
    root = tmp_path_factory.mktemp("braid-session")
    for sub in ("data", "run", "config", "xdg-config", "xdg-data", "xdg-state"):
        (root / sub).mkdir(mode=0o700)
    saved = {k: os.environ.get(k) for k in (
        "DBUS_SESSION_BUS_ADDRESS", "BRAID_CONFIG_DIR", "PYTHON_KEYRING_BACKEND",
        "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME")}
    # A backend chosen in the developer's environment or keyringrc.cfg must not leak in.
    os.environ.pop("PYTHON_KEYRING_BACKEND", None)
    os.environ["XDG_CONFIG_HOME"] = str(root / "xdg-config")
    os.environ["XDG_DATA_HOME"] = str(root / "xdg-data")
    os.environ["XDG_STATE_HOME"] = str(root / "xdg-state")
    os.environ["BRAID_CONFIG_DIR"] = str(root / "config")
    address, procs = _start_keyring(root)
    try:
        yield KeyringSession(root=root, bus_address=address, config_dir=root / "config",
                             procs=procs)
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(autouse=True)
def keyring_alive(keyring_session: KeyringSession, request: pytest.FixtureRequest) -> None:
    """gnome-keyring-daemon (3.36, Debian 12's) can abort on a client that left before
    its answer ("gkd_secret_service_get_pkcs11_session: assertion 'client' failed", then
    a GLib assertion: seen once in a fresh-clone CI run, in a lab test that stops an
    engine). Every later test would then fail on a missing Secret Service. So a dead
    daemon is started again, with a fresh keyring (a desktop's is started again by
    D-Bus activation), and said loudly: the test it died in has failed already."""
    session = keyring_session
    keyringd = session.procs[-1]
    if keyringd.poll() is None:
        return
    session.restarts += 1
    warnings.warn(f"gnome-keyring-daemon exited ({keyringd.returncode}) before "
                  f"{request.node.nodeid}; restarted with a fresh keyring (see "
                  f"{session.root / 'keyring.log'})", stacklevel=1)
    session.procs[-1] = _start_keyringd(session.root, session.bus_address,
                                        session.root / f"data-{session.restarts}")


@pytest.fixture
def config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh, empty BRAID_CONFIG_DIR for one test (the keyring stays the session's)."""
    path = tmp_path / "braid-config"
    path.mkdir()
    monkeypatch.setenv("BRAID_CONFIG_DIR", str(path))
    return path


@pytest.fixture
def make_lab() -> Iterator[Callable[..., LabInfo]]:
    """Build labs (unique names) and destroy them after the test, whatever happens."""
    built: list[str] = []

    def make(scenario: str | Path = "clean", **kwargs: object) -> LabInfo:
        name = unique_name("t", 4)
        built.append(name)
        return topology.build(name, scenario, **kwargs)  # type: ignore[arg-type]

    yield make
    for name in built:
        topology.destroy(name)
