"""The tray icon and its menu, on snapshots fed straight into the app."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from pytestqt.qtbot import QtBot

from app.core.errors import BraidError
from app.core.model import ConnState, ErrorInfo
from app.ui.app import BraidApp
from app.ui.icons import state_icon
from app.ui.menu import NO_TARGETS
from tests.ui.snapshots import EngineBox, Target, dispose, path, snap, switch, three_paths


@pytest.fixture
def app(qtbot: QtBot) -> Iterator[tuple[BraidApp, EngineBox]]:
    box = EngineBox()
    braid = BraidApp(box, use_tray=True)
    yield braid, box
    dispose(braid)


def test_icon_and_tooltip_follow_the_state(app: tuple[BraidApp, EngineBox]) -> None:
    braid, _ = app
    tray = braid.tray
    assert tray is not None
    for state in ConnState:
        braid.controller.apply(snap(state, paths=(path("hk"),), classes={"default": ("hk",)}))
        assert tray.icon.icon().cacheKey() == state_icon(state).cacheKey()
    braid.controller.apply(three_paths("tk"))
    assert tray.icon.toolTip() == "Braid — Connected · lab-t1\nvia tk: RTT 80 ms, loss 0.0 %"


def test_menu_connects_to_a_chosen_profile(app: tuple[BraidApp, EngineBox]) -> None:
    braid, box = app
    menu = braid.menu
    assert [a.text() for a in menu.actions() if not a.isSeparator()] == [
        "Disconnected", "Connect", "Disconnect", "Paths…", "Apps…", "Settings…", "Show log",
        "Start at login", "Quit"]
    assert not menu.disconnect_action.isEnabled()
    menu.connect_menu.aboutToShow.emit()
    labels = [a.text() for a in menu.connect_menu.actions()]
    assert labels == ["lab-t1 (lab t1)", "office"]
    menu.connect_menu.actions()[0].trigger()
    assert box.e.calls == [("connect", Target("lab-t1", "t1"))]


def test_menu_shows_state_and_the_path_of_each_class(app: tuple[BraidApp, EngineBox]) -> None:
    braid, box = app
    menu = braid.menu
    braid.controller.apply(snap(paths=(path("hk"), path("tk")),
                                classes={"realtime": ("hk", "tk"), "default": ("tk",)}))
    texts = [a.text() for a in menu.actions() if not a.isSeparator()]
    assert texts == ["Connected · lab-t1", "Connect", "Disconnect", "realtime: hk, tk",
                     "default: tk", "Paths…", "Apps…", "Settings…", "Show log",
                     "Start at login", "Quit"]
    assert not any(a.isEnabled() for a in menu.class_actions)
    menu.connect_menu.aboutToShow.emit()
    assert [a.isChecked() for a in menu.connect_menu.actions()] == [True, False]
    menu.disconnect_action.trigger()
    assert box.e.calls == [("disconnect", None)]


def test_no_profiles_says_how_to_make_one(app: tuple[BraidApp, EngineBox]) -> None:
    braid, box = app
    box.e.available = []
    braid.menu.connect_menu.aboutToShow.emit()
    (only,) = braid.menu.connect_menu.actions()
    assert only.text() == NO_TARGETS and not only.isEnabled()


def test_failover_shows_a_notification(app: tuple[BraidApp, EngineBox]) -> None:
    braid, _ = app
    assert braid.tray is not None
    braid.controller.apply(three_paths("hk"))
    braid.controller.apply(snap(ConnState.FAILING_OVER,
                                paths=(path("hk", None, up=False), path("tk")),
                                classes={"default": ("tk",)}, events=(switch("hk", "tk"),)))
    assert [n.title for n in braid.tray.notices] == ["Braid: hk failed, traffic moved to tk"]


def test_paths_entry_opens_the_graph_window(app: tuple[BraidApp, EngineBox],
                                            qtbot: QtBot) -> None:
    braid, _ = app
    braid.menu.paths_action.trigger()
    qtbot.waitUntil(braid.graph.isVisible)
    braid.toggle_paths()
    assert not braid.graph.isVisible()


def test_errors_become_dialogs(app: tuple[BraidApp, EngineBox], qtbot: QtBot) -> None:
    braid, _ = app
    text = ErrorInfo.of(BraidError("the keyring is locked", "unlock your login keyring"))
    braid.controller.apply(snap(ConnState.ERROR, error=text))
    (msg,) = braid.errors.open_messages()
    assert (msg.what, msg.fix) == ("the keyring is locked", "unlock your login keyring")
    braid.errors.close_all()
    qtbot.waitUntil(lambda: braid.errors.open_messages() == [])


def test_quit_disconnects_and_hides_everything(app: tuple[BraidApp, EngineBox]) -> None:
    braid, box = app
    braid.show_paths()
    braid.menu.quit_action.trigger()
    assert box.e.calls == [("shutdown", 10.0)]
    assert braid.tray is not None and not braid.tray.icon.isVisible()
    assert not braid.graph.isVisible()


def test_connect_by_name(app: tuple[BraidApp, EngineBox]) -> None:
    braid, box = app
    braid.connect_named("office")
    braid.connect_named("lab-t1 (lab t1)")
    assert box.e.calls == [("connect", Target("office")), ("connect", Target("lab-t1", "t1"))]
    with pytest.raises(BraidError, match=r"no profile named 'nope' \(profiles: lab-t1"):
        braid.connect_named("nope")


def test_the_menu_says_where_realtime_is_copied_and_why_not_on_separate_exits(
        app: tuple[BraidApp, EngineBox]) -> None:
    braid, _ = app
    menu = braid.menu
    base = snap(paths=(path("hk"), path("tk")),
                classes={"realtime": ("hk",), "default": ("tk",)})
    braid.controller.apply(replace(base, copies=("tk",), copies_reason="hk loses 3.0 %"))
    texts = [a.text() for a in menu.class_actions]
    assert texts == ["realtime: hk", "default: tk", "realtime on hk, copied onto tk"]
    assert not any(a.isEnabled() for a in menu.class_actions)
    braid.controller.apply(replace(base, copies_reason=(
        "off: the gateways have separate exits, so a copy would reach the far end from "
        "another address")))
    assert [a.text() for a in menu.class_actions][-1] == \
        "realtime copies off: the gateways have separate exits"
