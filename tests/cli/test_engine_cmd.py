"""`braid up`, `braid status`, `braid down` as a user runs them: target choice and tuning
(pure), then against real labs (one engine, many views)."""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from app.cli.engine_cmd import engine_config, resolve_target
from app.core.errors import BraidError
from app.core.helper_client import SyncHelperClient
from app.lab import control
from app.lab.topology import LabInfo
from tests.util import wait_until


def test_target_needs_a_choice_when_there_are_several_profiles(
        config_dir: Path) -> None:
    args = argparse.Namespace(lab=None, profile=None)
    with pytest.raises(BraidError, match="which profile"):
        resolve_target(args)
    # A lab that is not up says so and how to build it (not "braid import").
    with pytest.raises(BraidError, match="lab 'nolab' is not up") as err:
        resolve_target(argparse.Namespace(lab="nolab", profile=None))
    assert "braid lab up --name nolab" in err.value.fix


def test_bad_tuning_is_a_clear_error() -> None:
    with pytest.raises(BraidError, match="margin"):
        engine_config(argparse.Namespace(margin=2.0, dwell=None, hold_down=None))
    cfg = engine_config(argparse.Namespace(margin=None, dwell=1.0, hold_down=None))
    assert cfg.decide is not None and cfg.decide.dwell_s == 1.0
    assert cfg.decide.hold_down_s == 15.0
    # Nothing given: every class's tuning comes from the profile.
    assert engine_config(argparse.Namespace(margin=None, dwell=None, hold_down=None)).decide \
        is None


def braid(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli.main", *args], capture_output=True,
                          text=True, env=env, timeout=60, cwd=Path(__file__).parents[2])


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "BRAID_RUNTIME_DIR": str(tmp_path / "run")}


def test_up_status_down_in_the_background(make_lab: Callable[..., LabInfo],
                                          env: dict[str, str]) -> None:
    lab = make_lab("clean")
    up = braid("up", "--lab", lab.name, env=env)
    assert up.returncode == 0, up.stderr
    assert "in the background" in up.stdout and "hk" in up.stdout

    again = braid("up", "--lab", lab.name, env=env)
    assert again.returncode == 2 and "already up" in again.stderr

    def status() -> dict[str, object]:
        done = braid("status", "--json", env=env)
        assert done.returncode == 0, done.stderr
        doc: dict[str, object] = json.loads(done.stdout)
        return doc

    doc = wait_until(lambda: (d := status())["state"] == "connected" and d, timeout=20)
    assert doc["classes"]["default"] == ["hk"] and doc["classes"]["realtime"] == ["hk"]
    assert doc["classes"]["bulk"] not in ([], ["hk"])  # kept off realtime's path
    paths = doc["paths"]
    assert isinstance(paths, list) and [p["name"] for p in paths] == ["hk", "tyo", "sgp"]
    for p in paths:
        assert {"rtt_ms", "jitter_ms", "loss", "score", "up"} <= set(p)
        assert p["up"] is True and p["rtt_ms"] > 0
    events = doc["events"]
    assert isinstance(events, list)
    assert any(e["kind"] == "placed" and e["to_path"] == "hk" for e in events)

    table = braid("status", "--lab", lab.name, env=env)
    assert table.returncode == 0 and "default -> hk" in table.stdout

    down = braid("down", env=env)
    assert down.returncode == 0, down.stderr
    with SyncHelperClient(lab.helper_socket) as client:
        held = client.status()
    assert held.tunnels == () and held.rules == 0 and not held.marking
    assert json.loads(braid("status", "--json", env=env).stdout)["state"] == "disconnected"


def test_bad_target_is_a_clear_error_and_starts_nothing(env: dict[str, str]) -> None:
    done = braid("up", "--lab", "nolab", env=env)
    assert done.returncode == 2
    assert "no profile named 'lab-nolab'" in done.stderr or "not up" in done.stderr
    assert "what to do" in done.stderr
    assert not list((Path(env["BRAID_RUNTIME_DIR"]) / "engine").glob("*.sock"))


def test_foreground_prints_events_and_stops_cleanly_on_sigterm(
        make_lab: Callable[..., LabInfo], env: dict[str, str]) -> None:
    lab = make_lab("clean")
    proc = subprocess.Popen([sys.executable, "-m", "app.cli.main", "up", "--lab", lab.name,
                             "--foreground"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=Path(__file__).parents[2])
    try:
        wait_until(lambda: re.search(r": connected \(.*default -> ", braid(
            "status", "--lab", lab.name, env=env).stdout),
                   timeout=20, message="the foreground engine never connected")
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert re.search(r"placed default - -> (hk|tyo|sgp): connected", out), out
    runtime_dir = Path(env["BRAID_RUNTIME_DIR"]) / "engine"
    assert not list(runtime_dir.glob("*.sock")) and not list(runtime_dir.glob("*.lock"))
    with SyncHelperClient(lab.helper_socket) as client:
        assert client.status().tunnels == ()


def test_up_on_cn_us_returns_decided_and_the_slow_path_is_not_called_down(
        make_lab: Callable[..., LabInfo], env: dict[str, str]) -> None:
    """The 280 ms path's first handshake takes about a second, or 5 s more when it is
    lost (WireGuard's REKEY_TIMEOUT): the path is connecting, not down, meanwhile; and
    `braid up` returns only once the class has its path in the kernel."""
    lab = make_lab("cn-us")
    control.impair(lab.name, "us", {"down": True})  # its first handshake gets lost
    up = braid("up", "--lab", lab.name, env=env)
    assert up.returncode == 0, up.stderr
    try:
        control.impair(lab.name, "us", {"down": False})  # WireGuard's retry gets through
        doc = json.loads(braid("status", "--json", env=env).stdout)
        assert doc["state"] in ("connected", "degraded"), doc["state"]
        assert doc["classes"]["default"], doc["classes"]
        assert "CLOSED" not in braid("status", env=env).stdout.splitlines()[0]

        def us_answering() -> dict[str, object] | None:
            d: dict[str, object] = json.loads(braid("status", "--json", env=env).stdout)
            paths = d["paths"]
            assert isinstance(paths, list)
            return d if next(p for p in paths if p["name"] == "us")["up"] else None

        doc = wait_until(us_answering, timeout=15, message="the us path never answered")
        events = doc["events"]
        assert isinstance(events, list)
        downs = [e["reason"] for e in events if e["kind"] == "path_down"]
        assert downs == [], downs
    finally:
        assert braid("down", env=env).returncode == 0
