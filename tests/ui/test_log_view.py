""""Show log": the tray menu's entry and the no-tray window's button open a read-only
view of the log file's tail, which follows the file (appends and rotations)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.core import logs
from app.ui.app import BraidApp
from app.ui.log_view import LogView
from app.wire.version import package_version
from tests.ui.snapshots import EngineBox, dispose
from tests.util import root_logging_restored


@pytest.fixture
def log_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Braid's real log set-up, in a temp state dir; the root logger restored after."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    with root_logging_restored():
        path = logs.setup()
        assert path is not None
        yield path


def make_app(use_tray: bool) -> BraidApp:
    return BraidApp(EngineBox(), use_tray=use_tray)


def test_show_log_in_the_tray_menu_opens_the_log_tail(qtbot: QtBot, log_file: Path) -> None:
    logging.getLogger("app.core.engine").info("switch default: failover: hk declared down")
    braid = make_app(use_tray=True)
    try:
        assert braid.menu.log_action is not None
        braid.menu.log_action.trigger()
        view = braid.log_view
        assert view is not None
        qtbot.waitUntil(view.isVisible)
        assert view.text.isReadOnly()
        assert "switch default: failover: hk declared down" in view.text.toPlainText()
        assert view.heading.text() == f"Braid {package_version()} · {log_file}"

        # It follows the file: a line logged now shows up without touching anything.
        logging.getLogger("app.core.engine").info("restore hk: back")
        qtbot.waitUntil(lambda: "restore hk: back" in view.text.toPlainText(), timeout=5000)
        bar = view.text.verticalScrollBar()
        assert bar.value() == bar.maximum()  # newest line in view

        # Opening it again brings up the same window.
        braid.menu.log_action.trigger()
        assert braid.log_view is view
        braid.quit()
        assert not view.isVisible() and not view.timer.isActive()
    finally:
        dispose(braid)


def test_the_no_tray_window_has_a_show_log_button(qtbot: QtBot, log_file: Path) -> None:
    braid = make_app(use_tray=False)
    try:
        assert braid.window is not None and braid.window.log_button is not None
        braid.window.log_button.click()
        assert braid.log_view is not None
        qtbot.waitUntil(braid.log_view.isVisible)
    finally:
        dispose(braid)


def test_the_view_follows_a_rotation_and_says_when_there_is_nothing(
        qtbot: QtBot, tmp_path: Path) -> None:
    path = tmp_path / "braid.log"
    view = LogView(path, refresh_ms=50)
    qtbot.addWidget(view)
    view.show()
    assert view.text.toPlainText() == f"Nothing logged yet: {path} is empty or not there."
    path.write_text("first file\n")
    qtbot.waitUntil(lambda: view.text.toPlainText() == "first file\n", timeout=5000)
    os.rename(path, tmp_path / "braid.log.1")
    path.write_text("after rotation\n")
    qtbot.waitUntil(lambda: view.text.toPlainText() == "after rotation\n", timeout=5000)

    # Nothing changed: nothing read. Hidden: not even looked at.
    reloads = view.reloads
    assert not view.refresh() and view.reloads == reloads
    view.hide()
    assert not view.timer.isActive()


def test_a_big_log_shows_only_its_tail_from_a_whole_line(qtbot: QtBot, tmp_path: Path) -> None:
    path = tmp_path / "braid.log"
    path.write_text("".join(f"2024-01-01 line {i:06d}\n" for i in range(100_000)))  # 2.3 MB
    view = LogView(path, tail_bytes=10_000)
    qtbot.addWidget(view)
    view.show()
    text = view.text.toPlainText()
    assert len(text) <= 10_000
    assert text.startswith("2024-01-01 line ") and text.endswith("line 099999\n")


def test_scrolled_up_the_view_keeps_its_place(qtbot: QtBot, tmp_path: Path) -> None:
    path = tmp_path / "braid.log"
    path.write_text("".join(f"line {i}\n" for i in range(500)))
    view = LogView(path, refresh_ms=50)
    qtbot.addWidget(view)
    view.show()
    bar = view.text.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum())  # opened
    bar.setValue(10)  # the user scrolls up
    with path.open("a") as f:
        f.write("one more\n")
    qtbot.waitUntil(lambda: "one more" in view.text.toPlainText(), timeout=5000)
    assert bar.value() == 10


def test_it_opens_at_the_newest_line(qtbot: QtBot, tmp_path: Path) -> None:
    path = tmp_path / "braid.log"
    path.write_text("".join(f"2026-12-01 22:49:{i:02d} braid.engine INFO placed default\n"
                            for i in range(60)))
    view = LogView(path)
    qtbot.addWidget(view)
    view.show()
    bar = view.text.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 0 and bar.value() == bar.maximum())
