"""The Apps window: real processes with real sockets, listed through sock_diag; the
selector pins them through the real helper into its real cgroup v2 groups on a lab the
app is connected to; the rule lands in rules.toml; the class shows in the tray menu.
The rest (a rule for an app that is not running, unpinning, the timer stopping when
hidden) on this machine's own namespace, where no helper answers: the rule is saved and
waits for a connection, as `braid pin` says."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.core.apprules import RuleStore
from app.core.model import ConnState
from app.core.service import EngineHub
from app.lab.topology import LabInfo, netns
from app.ui.app import BraidApp
from app.ui.apps_window import AppsWindow
from app.wire.classes import BULK
from tests.ui.snapshots import EngineBox, dispose

CONNECT_MS = 30_000
# A UDP socket bound and a TCP socket connected to a listener of its own, then it waits:
# network activity an app list must show.
APP = ("import socket, sys\n"
       "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(('127.0.0.1', 0))\n"
       "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen()\n"
       "t = socket.create_connection(l.getsockname())\n"
       "print('ready', flush=True); sys.stdin.read()\n")


@pytest.fixture
def program(tmp_path: Path) -> Path:
    """A program of the test's own (a copy of Python): a rule for it matches nothing else
    on the machine."""
    copy = tmp_path / "hui-app"
    shutil.copy(os.path.realpath(sys.executable), copy)
    return copy


@contextmanager
def running(program: Path, ns: str | None = None) -> Iterator[subprocess.Popen[str]]:
    where = ["ip", "netns", "exec", ns] if ns else []
    child = subprocess.Popen([*where, str(program), "-c", APP], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        yield child
    finally:
        child.kill()
        child.wait()


def cgroup(pid: int) -> str:
    return Path(f"/proc/{pid}/cgroup").read_text()


def listed(window: AppsWindow, exe: Path) -> int | None:
    return window.row_of(str(exe))


def choose(window: AppsWindow, exe: Path, choice: str) -> None:
    """As the user picks ``choice`` in the app's selector."""
    row = window.row_of(str(exe))
    assert row is not None
    combo = window.combo(row)
    index = combo.findText(choice)
    combo.setCurrentIndex(index)
    combo.activated.emit(index)


def test_the_selector_pins_a_running_app_on_a_lab(
        qtbot: QtBot, config_dir: Path, make_lab: Callable[..., LabInfo],
        program: Path) -> None:
    lab = make_lab("clean")
    braid = BraidApp(EngineHub, use_tray=True)
    try:
        braid.connect_named(f"lab-{lab.name}")
        c = braid.controller
        qtbot.waitUntil(lambda: c.latest.state is ConnState.CONNECTED
                        and bool(c.latest.classes.get(BULK)), timeout=CONNECT_MS)
        with running(program, netns(lab.name, "client")) as child:
            assert braid.menu.apps_action is not None
            braid.menu.apps_action.trigger()
            window = braid.apps
            assert window is not None
            qtbot.waitUntil(window.isVisible)
            # Listed (from the lab's namespace: the app is connected to the lab) by the
            # window's own refresh, with its sockets and no class yet.
            qtbot.waitUntil(lambda: listed(window, program) is not None, timeout=10_000)
            row = window.rows[listed(window, program) or 0]
            assert row.pids == (child.pid,) and row.sockets >= 3 and row.cls is None
            assert window.table.item(listed(window, program) or 0, 1).text() == "—"
            assert "A socket keeps the class it was opened in" in window.note.text()

            choose(window, program, BULK)
            # Moved at once by the lab's helper into its bulk group; the rule is saved.
            assert "/braid/bulk" in cgroup(child.pid)
            assert [(r.exe, r.cls) for r in RuleStore(config_dir).load()] == [
                (str(program), BULK)]
            assert 'class = "bulk"' in (config_dir / "rules.toml").read_text()
            status = window.status.text()
            assert f"moved 1 running process (pid {child.pid}) into bulk" in status
            assert f"to restart it in its class: kill {child.pid} && " in status
            assert window.restart is not None and window.copy_button.isEnabled()
            i = listed(window, program)
            assert i is not None and window.combo(i).currentText() == BULK
            carriers = ", ".join(c.latest.classes[BULK])
            qtbot.waitUntil(lambda: window.table.item(
                listed(window, program) or 0, 1).text() == f"bulk (via {carriers})",
                timeout=5_000)
            # The tray menu shows the class and the path it takes.
            menu = [a.text() for a in braid.menu.class_actions]
            assert f"bulk: {carriers}" in menu

            choose(window, program, "none")  # unpinned: out of the group, rule gone
            assert "/braid/" not in cgroup(child.pid)
            assert RuleStore(config_dir).load() == []
    finally:
        braid.quit()
        dispose(braid)


@pytest.fixture
def apps(qtbot: QtBot, config_dir: Path) -> Iterator[tuple[BraidApp, AppsWindow]]:
    braid = BraidApp(EngineBox(), use_tray=True)
    braid.show_apps()
    assert braid.apps is not None
    yield braid, braid.apps
    dispose(braid)


def test_without_a_connection_a_choice_is_saved_for_later(
        qtbot: QtBot, apps: tuple[BraidApp, AppsWindow], config_dir: Path,
        program: Path) -> None:
    _, window = apps
    with running(program) as child:
        qtbot.waitUntil(lambda: listed(window, program) is not None, timeout=10_000)
        assert window.rows[listed(window, program) or 0].pids == (child.pid,)
        choose(window, program, "realtime")
        assert [(r.exe, r.cls) for r in RuleStore(config_dir).load()] == [
            (str(program), "realtime")]
        assert "the rule applies when" in window.status.text()
        assert "/braid/" not in cgroup(child.pid)  # nothing moved it: no helper here
        choose(window, program, "none")
        assert RuleStore(config_dir).load() == []
        assert f"{program} has no rule now" in window.status.text()


def test_a_rule_for_an_app_that_is_not_running(
        qtbot: QtBot, apps: tuple[BraidApp, AppsWindow], config_dir: Path,
        program: Path, tmp_path: Path) -> None:
    braid, window = apps
    launcher = tmp_path / "hui.desktop"
    launcher.write_text(f"[Desktop Entry]\nType=Application\nName=Hui\nExec={program} %U\n")
    window.add_edit.setText(str(launcher))
    window.add_class.setCurrentText(BULK)
    window.add_button.click()
    assert [(r.exe, r.cls) for r in RuleStore(config_dir).load()] == [(str(program), BULK)]
    i = listed(window, program)
    assert i is not None and window.table.item(i, 1).text() == "not running"
    assert window.combo(i).currentText() == BULK and window.add_edit.text() == ""
    # A program that does not exist is a dialog saying what to give; nothing is saved.
    window.add_edit.setText(str(tmp_path / "no-such-program"))
    window.add_button.click()
    (shown,) = braid.errors.shown
    assert "no program" in shown.what and "full path" in shown.fix
    assert len(RuleStore(config_dir).load()) == 1


def test_it_lists_only_while_shown(qtbot: QtBot, config_dir: Path) -> None:
    braid = BraidApp(EngineBox(), use_tray=True)
    try:
        braid.show_apps()
        window = braid.apps
        assert window is not None and window.timer.isActive()
        window.timer.setInterval(50)
        seen = window.refreshes
        qtbot.waitUntil(lambda: window.refreshes >= seen + 2, timeout=5_000)
        window.hide()
        assert not window.timer.isActive()
    finally:
        dispose(braid)
