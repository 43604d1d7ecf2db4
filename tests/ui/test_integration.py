"""The tray app against a real lab: real EngineHub, helper, wireguard-go, relays.

Offscreen there is no system tray, but QSystemTrayIcon and its menu still work as
objects, so the tray path is driven through its real menu actions.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import string
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.core.helper_client import SyncHelperClient
from app.core.model import ConnState, Event, EventKind
from app.core.service import EngineHub
from app.lab import control, stream, topology
from app.lab.topology import LabInfo
from app.ui.app import BraidApp
from tests.ui.snapshots import dispose
from tests.util import wait_until

CONNECT_MS = 30_000


def _lab_name() -> str:
    return "t" + "".join(secrets.choice(string.ascii_lowercase + string.digits)
                         for _ in range(4))


def tunnels(lab: str) -> list[str]:
    """Braid's tunnel interfaces in the lab's client namespace."""
    out = subprocess.run(["ip", "-n", topology.netns(lab, "client"), "-o", "link", "show"],
                         check=True, capture_output=True, text=True).stdout
    names = (line.split(":")[1].strip().split("@")[0] for line in out.splitlines())
    return [n for n in names if n.startswith("br-")]


@pytest.fixture
def lab() -> Iterator[str]:
    name = _lab_name()
    try:
        topology.build(name, "clean")
        yield name
    finally:
        topology.destroy(name)


@pytest.fixture
def braid(qtbot: QtBot) -> Iterator[BraidApp]:
    app = BraidApp(EngineHub, use_tray=True)
    yield app
    app.quit()
    dispose(app)


def reason_of(events: Sequence[Event], kind: EventKind, from_path: str) -> str:
    """The engine's reason on its latest `kind` event away from `from_path`."""
    return next(e.reason for e in reversed(events)
                if e.kind is kind and e.from_path == from_path)


def connect_from_menu(braid: BraidApp, lab: str) -> None:
    braid.menu.connect_menu.aboutToShow.emit()
    label = f"lab-{lab} (lab {lab})"
    (action,) = [a for a, _ in braid.menu.target_actions if a.text() == label]
    action.trigger()


def test_connect_graph_failover_and_quit(lab: str, braid: BraidApp, qtbot: QtBot) -> None:
    connect_from_menu(braid, lab)
    c = braid.controller
    qtbot.waitUntil(lambda: c.latest.state is ConnState.CONNECTED, timeout=CONNECT_MS)
    tray = braid.tray
    assert tray is not None
    assert tray.icon.toolTip().startswith(f"Braid — Connected · lab-{lab}")

    braid.menu.paths_action.trigger()
    graph = braid.graph
    qtbot.waitUntil(graph.isVisible)
    names = [p.name for p in c.latest.paths]
    assert len(names) == 3

    def points(name: str) -> int:
        x = graph.curves[name]["rtt"].getData()[0]
        return 0 if x is None else len(x)

    def every_path_plotted() -> bool:
        return set(graph.curves) == set(names) and all(points(n) >= 5 for n in names)

    qtbot.waitUntil(every_path_plotted, timeout=10_000)
    rows = graph.table_rows()
    assert [r[0] for r in rows] == names and all(r[1] == "up" for r in rows)

    qtbot.waitUntil(lambda: bool(c.latest.classes.get("default")), timeout=10_000)
    active = c.latest.classes["default"][0]
    control.impair(lab, active, {"down": True})

    def moved() -> bool:
        carriers = c.latest.classes.get("default", ())
        return bool(carriers) and carriers[0] != active

    qtbot.waitUntil(moved, timeout=15_000)
    new = c.latest.classes["default"][0]
    qtbot.waitUntil(lambda: any(m.kind == "switch" and m.label.endswith(f"→ {new}")
                                for m in graph.marker_lines), timeout=5_000)
    title = f"Braid: {active} failed, traffic moved to {new}"
    qtbot.waitUntil(lambda: any(n.title == title for n in tray.notices), timeout=5_000)
    # The bubble says why: the engine's reason for the switch, and why the path it left
    # was declared down.
    note = next(n for n in tray.notices if n.title == title)
    assert f"realtime moved from {active} to {new}: " in note.message
    assert note.message.startswith("default, ")
    assert reason_of(c.latest.events, EventKind.FAILOVER, active) in note.message
    assert reason_of(c.latest.events, EventKind.PATH_DOWN, active) in note.message
    assert tunnels(lab)

    braid.menu.disconnect_action.trigger()
    qtbot.waitUntil(lambda: c.latest.state is ConnState.DISCONNECTED, timeout=CONNECT_MS)
    qtbot.waitUntil(lambda: tunnels(lab) == [], timeout=10_000)

    connect_from_menu(braid, lab)
    qtbot.waitUntil(lambda: c.latest.state in (ConnState.CONNECTED, ConnState.DEGRADED),
                    timeout=CONNECT_MS)
    qtbot.waitUntil(lambda: tunnels(lab) != [], timeout=10_000)
    braid.menu.quit_action.trigger()  # returns once the engine has taken its tunnels down
    assert braid.quitting
    qtbot.waitUntil(lambda: tunnels(lab) == [], timeout=10_000)


def test_helper_not_running_is_a_dialog_saying_what_to_do(qtbot: QtBot) -> None:
    name = _lab_name()
    try:
        topology.build(name, "clean", start_helper=False)
        braid = BraidApp(EngineHub, use_tray=True)
        try:
            connect_from_menu(braid, name)
            qtbot.waitUntil(lambda: braid.controller.latest.state is ConnState.ERROR,
                            timeout=CONNECT_MS)
            qtbot.waitUntil(lambda: bool(braid.errors.open_messages()), timeout=5_000)
            (msg,) = braid.errors.open_messages()
            assert "helper" in msg.what and msg.fix
            assert braid.tray is not None
            assert braid.tray.icon.toolTip().startswith("Braid — Error")
        finally:
            braid.quit()
            dispose(braid)
    finally:
        topology.destroy(name)


def test_braid_app_command_connects_and_sigterm_takes_the_tunnels_down(lab: str) -> None:
    """The real entry point, as a desktop would start it: `braid app --lab LAB`."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.Popen([sys.executable, "-m", "app.cli.main", "app", "--lab", lab],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: tunnels(lab) or proc.poll() is not None, timeout=30,
                   message="the app brought no tunnel up")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert tunnels(lab) == []  # quitting waited for the engine to take them down
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_all_paths_lost_and_restored_are_notified(lab: str, braid: BraidApp,
                                                  qtbot: QtBot) -> None:
    connect_from_menu(braid, lab)
    c = braid.controller
    qtbot.waitUntil(lambda: c.latest.state is ConnState.CONNECTED, timeout=CONNECT_MS)
    tray = braid.tray
    assert tray is not None
    names = [p.name for p in c.latest.paths]
    for name in names:
        control.impair(lab, name, {"down": True})
    qtbot.waitUntil(lambda: any(n.title == "Braid: all paths lost" for n in tray.notices),
                    timeout=15_000)
    lost = next(n for n in tray.notices if n.title == "Braid: all paths lost")
    assert lost.critical and "blocked" in lost.message
    last = next(e for e in reversed(c.latest.events) if e.kind is EventKind.BLOCKED).from_path
    assert last is not None
    assert reason_of(c.latest.events, EventKind.BLOCKED, last) in lost.message
    assert reason_of(c.latest.events, EventKind.PATH_DOWN, last) in lost.message
    assert c.latest.classes.get("default") == ()
    assert "default: blocked: no path" in [a.text() for a in braid.menu.class_actions]
    assert any(m.kind == "fail_closed" for m in braid.history.markers())

    control.impair(lab, names[-1], {"down": False})
    qtbot.waitUntil(lambda: any(n.title == "Braid: connection restored" for n in tray.notices),
                    timeout=15_000)
    qtbot.waitUntil(lambda: c.latest.classes.get("default") == (names[-1],), timeout=5_000)


def test_one_engine_many_views(lab: str, qtbot: QtBot, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`braid up --lab L`, then the tray app on L: the app attaches to that engine instead
    of starting a second one and shows its state; quitting the app leaves the engine
    connected and passing traffic; `braid status` shows what the app showed."""
    monkeypatch.setenv("BRAID_RUNTIME_DIR", str(tmp_path / "run"))

    def braid_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "app.cli.main", *args], text=True,
                              capture_output=True, timeout=60, env=os.environ.copy())

    up = braid_cli("up", "--lab", lab)
    assert up.returncode == 0, up.stderr
    cli_engine = json.loads(braid_cli("status", "--json").stdout)["pid"]
    app = BraidApp(EngineHub, use_tray=True)
    try:
        app.connect_named(f"lab-{lab}")
        c = app.controller
        qtbot.waitUntil(lambda: c.latest.state is ConnState.CONNECTED
                        and c.latest.pid == cli_engine, timeout=CONNECT_MS)
        assert c.latest.runner == "braid up"
        # One engine: no engine thread in this process, and the helper has one owner.
        assert not [t for t in threading.enumerate() if t.name.startswith("braid-engine")]
        status = json.loads(braid_cli("status", "--json").stdout)
        assert (status["state"], status["classes"]) == (
            c.latest.state.value, {k: list(v) for k, v in c.latest.classes.items()})
        again = braid_cli("up", "--lab", lab)
        assert again.returncode == 2 and "already up" in again.stderr
        assert "braid up" in again.stderr and str(cli_engine) in again.stderr
        app.quit()
    finally:
        dispose(app)
    after = json.loads(braid_cli("status", "--json").stdout)
    assert after["state"] == "connected" and after["pid"] == cli_engine
    result = stream.stream(lab, pps=100, duration=1.0, size=200)
    assert result.received >= 0.9 * result.sent
    assert braid_cli("down").returncode == 0
    wait_until(lambda: tunnels(lab) == [], timeout=10)


def test_a_kill_switch_left_holding_shows_blocked_and_disconnect_releases_it(
        make_lab: Callable[..., LabInfo], qtbot: QtBot, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine dies without a disconnect (kill -9): past the helper's grace period
    the tunnels are gone but the kill switch holds. The tray says traffic is blocked and
    why; its Disconnect asks the helper to let go."""
    lab = make_lab("clean", helper_grace_seconds=1)
    monkeypatch.setenv("BRAID_RUNTIME_DIR", str(tmp_path / "run"))
    env = os.environ.copy()
    up = subprocess.run([sys.executable, "-m", "app.cli.main", "up", "--lab", lab.name],
                        text=True, capture_output=True, timeout=60, env=env)
    assert up.returncode == 0, up.stderr
    status = subprocess.run([sys.executable, "-m", "app.cli.main", "status", "--json"],
                            text=True, capture_output=True, timeout=60, env=env)
    os.kill(json.loads(status.stdout)["pid"], signal.SIGKILL)
    app = BraidApp(EngineHub, use_tray=True)
    try:
        c = app.controller
        c.attach_running()
        qtbot.waitUntil(lambda: c.latest.state is ConnState.BLOCKED, timeout=20_000)
        assert c.latest.profile == f"lab-{lab.name}" and c.latest.blocked
        tray = app.tray
        assert tray is not None and tray.icon.toolTip().startswith("Braid — Blocked")
        assert any(n.title == "Braid: traffic is blocked" for n in tray.notices)
        assert app.menu.disconnect_action.isEnabled()
        app.menu.disconnect_action.trigger()
        qtbot.waitUntil(lambda: c.latest.state is ConnState.DISCONNECTED, timeout=10_000)
        with SyncHelperClient(lab.helper_socket) as helper:
            assert helper.status().guard is None
        app.quit()
    finally:
        dispose(app)
