"""The PyInstaller bundle, built from this checkout: it runs with nothing of the
checkout or of any venv around it (a bare environment, cwd /), and the tray app in it
comes up offscreen, connects to a real lab, and quits cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

from app.core.helper_client import SyncHelperClient
from app.lab.topology import LabInfo
from tests.util import wait_until

REPO = Path(__file__).resolve().parents[2]
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


def bare_env(**extra: str) -> dict[str, str]:
    """No PYTHONPATH, no venv on PATH: only what a desktop session would have."""
    return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LANG": "C.UTF-8",
            **extra}


def run(bundle: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bundle), *args], capture_output=True, text=True, cwd="/",
                          env=bare_env(**extra), timeout=60)


def test_the_bundle_runs_on_its_own(bundle: Path) -> None:
    assert run(bundle, "--version").stdout == f"braid {VERSION}\n"
    helped = run(bundle, "--help")
    assert helped.returncode == 0 and "tray app" in helped.stdout
    # Braid starts parts of itself as `sys.executable -m MODULE`: the bundle does that too.
    helper = run(bundle, "-m", "app.helper.main", "--version")
    assert helper.stdout == f"braid-helper {VERSION}\n", helper.stderr
    assert not list(bundle.parent.rglob("app/cli/main.py"))  # byte code only, not the tree


def test_the_bundled_app_comes_up_offscreen_connects_and_quits(
        bundle: Path, make_lab: Callable[..., LabInfo], tmp_path: Path,
        config_dir: Path) -> None:
    lab = make_lab("clean")  # its profile lands in this test's config dir
    log = tmp_path / "state" / "braid" / "braid.log"
    env = bare_env(QT_QPA_PLATFORM="offscreen", XDG_STATE_HOME=str(tmp_path / "state"),
                   XDG_CONFIG_HOME=str(tmp_path / "config"), BRAID_CONFIG_DIR=str(config_dir),
                   DBUS_SESSION_BUS_ADDRESS=os.environ["DBUS_SESSION_BUS_ADDRESS"])
    proc = subprocess.Popen([str(bundle), "app", "--no-tray", "--lab", lab.name], cwd="/",
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        def logged(text: str) -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"the bundle exited {proc.returncode}: "
                                     f"{proc.stderr.read() if proc.stderr else ''}")
            return log.exists() and text in log.read_text()

        wait_until(lambda: logged("the app is up"), timeout=60, message="the bundle never came up")
        wait_until(lambda: logged("-> connected"), timeout=30,
                   message="the bundled app never connected to the lab")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "the app quit" in log.read_text()
    with SyncHelperClient(lab.helper_socket) as client:
        assert client.status().tunnels == ()  # it disconnected before it left
