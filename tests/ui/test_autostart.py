""""Start at login": off until the user ticks it; the tick writes the XDG autostart entry,
unticking removes it; a failure says why and leaves the tick as things really are."""

from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.ui import autostart
from app.ui.app import BraidApp
from tests.ui.snapshots import EngineBox, dispose


@pytest.fixture
def xdg_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "config"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


@pytest.fixture
def tray_app(qtbot: QtBot, xdg_config: Path) -> Iterator[BraidApp]:
    braid = BraidApp(EngineBox(), use_tray=True)
    yield braid
    dispose(braid)


def read_entry(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read(path)
    return parser["Desktop Entry"]


def test_the_menu_tick_writes_and_removes_the_entry(tray_app: BraidApp,
                                                    xdg_config: Path) -> None:
    action = tray_app.menu.autostart_action
    assert action is not None and action.isCheckable() and not action.isChecked()
    entry = xdg_config / "autostart" / "braid.desktop"
    assert not entry.exists()  # never on by itself

    action.trigger()
    assert action.isChecked() and entry.is_file()
    fields = read_entry(entry)
    assert fields["Name"] == "Braid" and fields["Icon"] == "braid"
    assert fields["X-GNOME-Autostart-enabled"] == "true"
    program, *args = fields["Exec"].split()
    assert args[-1] == "app"
    assert os.path.isabs(program) and os.access(program, os.X_OK)
    assert "TryExec" not in fields
    assert oct(entry.stat().st_mode & 0o777) == "0o644"

    action.trigger()
    assert not action.isChecked() and not entry.exists()


def test_the_entry_and_the_launcher_are_valid_desktop_files(xdg_config: Path) -> None:
    autostart.set_enabled(True)
    validate = shutil.which("desktop-file-validate")
    assert validate, "desktop-file-validate is missing: run scripts/setup.sh"
    repo_launcher = Path(__file__).resolve().parents[2] / "resources" / "braid.desktop"
    for path in (autostart.autostart_path(), repo_launcher):
        done = subprocess.run([validate, str(path)], capture_output=True, text=True)
        assert done.returncode == 0 and not done.stdout.strip(), f"{path}: {done.stdout}"


def test_the_menu_shows_a_change_made_elsewhere(tray_app: BraidApp) -> None:
    action = tray_app.menu.autostart_action
    assert action is not None
    autostart.set_enabled(True)  # another Braid, or the user's desktop settings
    tray_app.menu.aboutToShow.emit()
    assert action.isChecked()


def test_the_window_checkbox_does_the_same(qtbot: QtBot, xdg_config: Path) -> None:
    braid = BraidApp(EngineBox(), use_tray=False)
    try:
        box = braid.window.autostart_box if braid.window else None
        assert box is not None and not box.isChecked()
        box.click()
        assert box.isChecked() and autostart.enabled()
        menu_action = braid.menu.autostart_action
        assert menu_action is not None and menu_action.isChecked()  # both say the same
        box.click()
        assert not box.isChecked() and not autostart.enabled()
    finally:
        dispose(braid)


def test_a_failure_says_why_and_the_tick_stays_off(tray_app: BraidApp,
                                                   xdg_config: Path) -> None:
    xdg_config.mkdir()
    (xdg_config / "autostart").write_text("a file where the directory should be")
    action = tray_app.menu.autostart_action
    assert action is not None
    action.trigger()
    assert not action.isChecked()
    (shown,) = tray_app.errors.shown
    assert shown.what.startswith(f"cannot write {xdg_config / 'autostart' / 'braid.desktop'}")
    assert "writable" in shown.fix


def test_exec_quotes_a_path_with_spaces() -> None:
    text = autostart.entry_text(["/opt/My Apps/braid", "app"])
    assert 'Exec="/opt/My Apps/braid" app\n' in text
