from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from app.core.model import ConnState
from app.ui.app import BraidApp
from tests.ui.snapshots import EngineBox, dispose, path, snap, switch, three_paths


@pytest.fixture
def braid(qtbot: QtBot) -> Iterator[BraidApp]:
    app = BraidApp(EngineBox(), use_tray=True)
    yield app
    dispose(app)


def feed(braid: BraidApp, start: float, n: int, rate: float = 5.0, active: str = "hk") -> float:
    t = start
    for i in range(n):
        t = start + i / rate
        braid.controller.apply(three_paths(active, t=t))
    return t


def test_curves_are_created_once_and_fed_with_set_data(braid: BraidApp, qtbot: QtBot) -> None:
    braid.show_paths()
    qtbot.waitUntil(braid.graph.isVisible)
    feed(braid, 1000.0, 10)
    curves = {n: dict(c) for n, c in braid.graph.curves.items()}
    assert list(curves) == ["hk", "tk", "sg"]
    feed(braid, 1002.0, 10)
    assert {n: dict(c) for n, c in braid.graph.curves.items()} == curves
    rtt = curves["tk"]["rtt"]
    assert rtt.opts["clipToView"] and rtt.opts["autoDownsample"]
    x, y = rtt.getData()
    assert len(x) == 20 and set(np.asarray(y).tolist()) == {80.0}
    plot_items = braid.graph.plots["rtt"].listDataItems()
    assert len(plot_items) == 3  # one curve per path, never more


def test_redraws_pause_while_hidden_and_catch_up_when_shown(braid: BraidApp,
                                                            qtbot: QtBot) -> None:
    graph = braid.graph
    feed(braid, 1000.0, 25)
    assert graph.redraws == 0 and graph.curves == {}
    assert len(braid.history.series("hk")) == 25  # history fills regardless
    braid.show_paths()
    qtbot.waitUntil(lambda: graph.redraws >= 1)
    x, _ = graph.curves["hk"]["rtt"].getData()
    assert len(x) == 25  # the past appears at once
    drawn = graph.redraws
    feed(braid, 1005.0, 5)
    assert graph.redraws == drawn + 5
    graph.hide()
    drawn = graph.redraws
    feed(braid, 1006.0, 5)
    assert graph.redraws == drawn


def test_redraws_pause_while_minimized_and_catch_up_when_restored(braid: BraidApp,
                                                                  qtbot: QtBot) -> None:
    graph = braid.graph
    braid.show_paths()
    qtbot.waitUntil(graph.isVisible)
    feed(braid, 1000.0, 5)
    graph.showMinimized()
    qtbot.waitUntil(graph.isMinimized)
    drawn = graph.redraws
    feed(braid, 1001.0, 5)
    assert graph.redraws == drawn
    braid.toggle_paths()  # a click on the tray icon brings a minimized window back
    qtbot.waitUntil(lambda: not graph.isMinimized() and graph.redraws > drawn)
    x, _ = graph.curves["hk"]["rtt"].getData()
    assert len(x) == 10  # what came while minimized is drawn on restoring


def test_switch_shows_a_marker_and_the_table_follows(braid: BraidApp, qtbot: QtBot) -> None:
    braid.show_paths()
    qtbot.waitUntil(braid.graph.isVisible)
    t = feed(braid, 1000.0, 10)
    ev = switch("hk", "tk", t=t + 0.1)
    braid.controller.apply(snap(ConnState.FAILING_OVER,
                                paths=(path("hk", None, up=False, loss=1.0, score=0.0),
                                       path("tk", 80.0, classes=("default",)), path("sg", 95.0)),
                                classes={"default": ("tk",)}, events=(ev,), t=t + 0.2))
    (marker,) = braid.graph.marker_lines
    assert marker.t == ev.t and marker.label == "default → tk"
    lines = braid.graph.marker_lines[marker]
    assert len(lines) == 4 and all(line.value() == ev.t for line in lines)
    rows = braid.graph.table_rows()
    assert rows[0][:2] == ["hk", "down"] and rows[0][5] == "100.0 %"
    assert rows[1][0] == "tk" and rows[1][-1] == "default"
    # The same event repeated in later snapshots draws no second marker.
    feed(braid, t + 0.4, 3, active="tk")
    assert len(braid.graph.marker_lines) == 1


def test_ten_minutes_of_three_paths_stay_within_the_window(qtbot: QtBot) -> None:
    app = BraidApp(EngineBox(), use_tray=True, history_s=600.0)
    try:
        feed(app, 0.0, 5 * 700)  # 11 minutes and a bit at 5 updates/s, hidden
        app.show_paths()
        t = feed(app, 700.0, 5)
        x, _ = app.graph.curves["sg"]["jitter"].getData()
        assert x[0] >= t - 600.0 and len(x) <= 5 * 600 + 1
        (lo, hi), _ = app.graph.plots["rtt"].viewRange()
        assert hi == pytest.approx(t) and lo == pytest.approx(t - 600.0)
    finally:
        dispose(app)
