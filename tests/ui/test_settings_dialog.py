"""The Settings dialog on a real profile (TOML in a temp config dir, keys in the session's
Secret Service): a change saved is in the file; a bad value is refused with the message
that names its field, and the file is left as it was."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtWidgets import QDialogButtonBox
from pytestqt.qtbot import QtBot

from app.core.profiles.model import ClassTuning, Profile
from app.core.profiles.store import ProfileStore
from app.ui.app import BraidApp
from app.ui.settings_dialog import SettingsDialog
from tests.core.test_profiles import make_gateway
from tests.ui.snapshots import EngineBox, dispose
from tests.util import unique_name


@pytest.fixture
def saved(config_dir: Path) -> tuple[ProfileStore, str]:
    store = ProfileStore()
    name = unique_name("t", 6)  # the keyring is the session's: keys of its own
    hk, hk_keys = make_gateway("hk", 0)
    tk, tk_keys = make_gateway("tk", 1)
    store.save(Profile(name=name, gateways=(hk, tk)), {"hk": hk_keys, "tk": tk_keys})
    return store, name


@pytest.fixture
def dialog(qtbot: QtBot, saved: tuple[ProfileStore, str]) -> Iterator[SettingsDialog]:
    braid = BraidApp(EngineBox(), use_tray=True)
    assert braid.menu.settings_action is not None
    braid.menu.settings_action.trigger()
    assert braid.settings is not None
    qtbot.waitUntil(braid.settings.isVisible)
    yield braid.settings
    dispose(braid)


def save(dialog: SettingsDialog) -> None:
    button = dialog.buttons.button(QDialogButtonBox.StandardButton.Save)
    assert button.isEnabled()
    button.click()


def test_a_change_is_saved_to_the_profile(
        dialog: SettingsDialog, saved: tuple[ProfileStore, str]) -> None:
    store, name = saved
    assert dialog.profile == name
    assert dialog.costs["tk"].text() == "2" and dialog.weights["latency"].text() == "0.4"
    assert dialog.tuning["realtime"]["hold_down_s"].text() == "10"
    assert dialog.lan_access.isChecked() and not dialog.always_on.isChecked()
    dialog.costs["hk"].setText("2.5")
    dialog.weights["jitter"].setText("0.1")
    dialog.tuning["realtime"]["margin"].setText("0.05")
    dialog.tuning["bulk"]["hold_down_s"].setText(" 45 ")
    dialog.lan_access.setChecked(False)
    dialog.always_on.setChecked(True)
    dialog.copies.setCurrentText("off")
    save(dialog)
    assert dialog.message.text().startswith("Saved to ")
    profile = store.load(name)
    assert [gw.cost for gw in profile.gateways] == [2.5, 2.0]
    assert profile.weights.jitter == 0.1
    s = profile.settings
    assert (s.lan_access, s.always_on, s.copies) == (False, True, "off")
    assert s.class_tuning("realtime").margin == 0.05
    assert s.class_tuning("bulk") == ClassTuning(0.15, 10.0, 45.0, 1.0)
    # Only the classes changed are written; default keeps the defaults.
    assert dict(s.tuning).keys() == {"realtime", "bulk"}
    text = store.path(name).read_text()
    assert "[settings.classes.bulk]" in text and "hold_down_s = 45.0" in text
    # The keys were left alone: the profile still connects.
    assert set(store.load_secrets(profile)) == {"hk", "tk"}


@pytest.mark.parametrize(("field", "value", "message"), [
    ("weights.loss", "-1", "weights.loss: -1.0 is not a number >= 0"),
    ("costs.tk", "cheap", "gateway 'tk': cost: 'cheap' is not a number"),
    ("tuning.bulk.hold_down_s", "abc", "settings.classes.bulk.hold_down_s: 'abc' is not a "
                                       "number"),
    ("tuning.realtime.margin", "2", "settings.classes.realtime: margin 2.0 is not within 0..1"),
    ("tuning.default.dwell_s", "-3", "settings.classes.default: dwell_s -3.0 is not a number "
                                     "of seconds >= 0"),
    ("bulk_after", "inf", "settings.bulk_after_mb: 'inf' is not a finite number"),
])
def test_a_bad_value_is_refused_and_nothing_is_saved(
        dialog: SettingsDialog, saved: tuple[ProfileStore, str], field: str, value: str,
        message: str) -> None:
    store, name = saved
    before = store.path(name).read_bytes()
    dialog.always_on.setChecked(True)  # a good change beside it is not saved either
    kind, *rest = field.split(".")
    if kind == "weights":
        dialog.weights[rest[0]].setText(value)
    elif kind == "costs":
        dialog.costs[rest[0]].setText(value)
    elif kind == "tuning":
        dialog.tuning[rest[0]][rest[1]].setText(value)
    else:
        dialog.bulk_after.setText(value)
    save(dialog)
    shown = dialog.message.text()
    assert shown.startswith(f"Not saved: profile {name!r}") and message in shown, shown
    assert "What to do: " in shown
    assert store.path(name).read_bytes() == before
    assert not store.load(name).settings.always_on
