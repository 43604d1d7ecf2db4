"""Where the desktop has no system tray (offscreen has none), the main window."""

from __future__ import annotations

from dataclasses import replace

from pytestqt.qtbot import QtBot

from app.core.model import ConnState
from app.ui.app import BraidApp
from app.ui.icons import state_icon
from tests.ui.snapshots import EngineBox, Target, path, snap, switch, three_paths


def test_no_tray_opens_the_main_window_with_the_same_controls(qtbot: QtBot) -> None:
    box = EngineBox()
    braid = BraidApp(box)  # offscreen: QSystemTrayIcon.isSystemTrayAvailable() is False
    assert braid.tray is None and braid.window is not None
    w = braid.window
    qtbot.waitUntil(w.isVisible)
    assert [w.targets.itemText(i) for i in range(w.targets.count())] == [
        "lab-t1 (lab t1)", "office"]
    assert not w.disconnect_button.isEnabled()
    w.targets.setCurrentIndex(1)
    w.connect_button.click()
    assert box.e.calls == [("connect", Target("office"))]

    braid.controller.apply(three_paths("hk"))
    assert w.headline.text() == "<b>Connected · lab-t1</b>"
    assert w.path_line.text() == "via hk: RTT 60 ms, loss 0.0 %"
    assert w.classes.text() == "default: hk"
    copied = replace(three_paths("hk"), classes={"realtime": ("hk",), "default": ("hk",)},
                     copies=("tk",), copies_reason="hk loses 3.0 %")
    braid.controller.apply(copied)
    assert w.classes.text().splitlines()[-1] == "realtime on hk, copied onto tk: hk loses 3.0 %"
    braid.controller.apply(three_paths("hk"))
    assert w.icon_label.pixmap().cacheKey() != 0
    assert w.disconnect_button.isEnabled()
    w.disconnect_button.click()

    braid.controller.apply(snap(ConnState.FAILING_OVER,
                                paths=(path("hk", None, up=False), path("tk")),
                                classes={"default": ("tk",)}, events=(switch("hk", "tk"),)))
    assert "hk failed, traffic moved to tk" in w.notice_label.text()
    # The whole notice shows, to its timings at the end, not cut off mid-sentence.
    assert "switched in 2.5 ms)" in w.notice_label.text()
    label = w.notice_label
    assert label.height() >= label.heightForWidth(label.width())
    assert w.state is ConnState.FAILING_OVER
    assert state_icon(ConnState.FAILING_OVER).cacheKey() != 0

    w.paths_button.click()
    qtbot.waitUntil(braid.graph.isVisible)
    w.close()  # closing the only window quits, and quitting disconnects
    assert box.e.calls[-1] == ("shutdown", 10.0)
    assert braid.quitting and not braid.graph.isVisible()
