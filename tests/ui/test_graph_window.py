from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from app.core.model import ConnState, EngineSnapshot
from app.ui.app import BraidApp
from app.ui.graph_window import CHUNK_COLUMNS, PathGraphWindow
from app.ui.plot_layers import CurveChunk, HeightItem, LegendEntry, TimeAxis
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


def with_rtt(s: EngineSnapshot, name: str, rtt: float | None, *, up: bool = True) -> EngineSnapshot:
    paths = tuple(path(p.name, rtt, up=up, loss=0.0 if up else 1.0, score=p.score if up else 0.0,
                       classes=p.classes) if p.name == name else p for p in s.paths)
    return snap(s.state, paths=paths, classes=s.classes, t=s.t)


LongRun = tuple[BraidApp, float]


@pytest.fixture
def long_run(qtbot: QtBot) -> Iterator[LongRun]:
    """An app whose history holds ten minutes of three paths at 10 Hz, window shown; and
    the time of its newest sample."""
    app = BraidApp(EngineBox(), use_tray=True, history_s=600.0)
    end = 10_000.0
    for i in range(6000):
        app.history.add(three_paths(t=end - 600 + i / 10))
    app.show_paths()
    qtbot.waitUntil(lambda: app.graph.redraws >= 1)
    yield app, end
    dispose(app)


def chunk_items(graph: PathGraphWindow, metric: str) -> list[CurveChunk]:
    return [i for i in graph.plots[metric].vb.addedItems + graph.plots[metric].vb.childGroup
            .childItems() if isinstance(i, CurveChunk)]


def test_every_path_is_drawn_in_a_few_items_per_plot_created_once(braid: BraidApp,
                                                                  qtbot: QtBot) -> None:
    braid.show_paths()
    qtbot.waitUntil(braid.graph.isVisible)
    feed(braid, 1000.0, 10)
    graph = braid.graph
    assert list(graph.paths) == ["hk", "tk", "sg"]
    items = {m: set(chunk_items(graph, m)) for m in graph.plots}
    feed(braid, 1002.0, 10)
    for metric, before in items.items():
        after = set(chunk_items(graph, metric))
        assert before <= after  # kept, not made again
        # One chunk per stretch of columns, whatever the number of paths.
        keys = graph.paths["hk"].columns.keys()
        assert keys is not None
        assert len(after) == keys[1] // CHUNK_COLUMNS - keys[0] // CHUNK_COLUMNS + 1
    x, y = graph.curves["tk"]["rtt"].getData()
    assert len(x) == 20 and set(y.tolist()) == {80.0}
    assert graph.plots["rtt"].listDataItems() == []
    # Only the height item counts for the plot's range: chunks and tails do not re-range it.
    assert [type(i) for i in graph.plots["rtt"].vb.addedItems] == [HeightItem]


def test_redraws_pause_while_hidden_and_catch_up_when_shown(braid: BraidApp,
                                                            qtbot: QtBot) -> None:
    graph = braid.graph
    feed(braid, 1000.0, 25)
    assert graph.redraws == 0 and graph.paths == {}
    assert len(braid.history.series("hk")) == 25  # history fills regardless
    braid.show_paths()
    qtbot.waitUntil(lambda: graph.redraws >= 1)
    x, _ = graph.curve_points("hk", "rtt")
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
    x, _ = graph.curve_points("hk", "rtt")
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
    assert len(lines) == 4 and all(line.t == ev.t for line in lines)
    # The label on the top plot only.
    assert [line.label for line in lines] == ["default → tk", None, None, None]
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
        x, _ = app.graph.curve_points("sg", "jitter")
        assert x[0] >= t - 600.0 - 2.0 and len(x) <= 5 * 600 + 1
        (lo, hi), _ = app.graph.plots["rtt"].viewRange()
        width = app.graph.plots["rtt"].vb.width()
        # Ten minutes, ending no more than a pixel after the newest sample.
        assert hi - lo == pytest.approx(600.0) and 0 < hi - t <= 600.0 / width * 1.01
    finally:
        dispose(app)


def test_a_long_span_moves_by_pixels_and_draws_the_newest_samples_live(long_run: LongRun) -> None:
    app, t = long_run
    graph = app.graph
    full, chunks = graph.full_redraws, graph.chunks_drawn
    tails = 0
    for i in range(50):  # five seconds at 10 Hz
        s = with_rtt(three_paths(t=t + i / 10), "hk", 60.0 + (i % 7))
        app.controller.apply(s)
        (_, right), _ = graph.plots["rtt"].viewRange()
        assert right >= s.t  # the newest sample is always in view
        tails += graph.tail_samples("hk") > 0
    moves = graph.full_redraws - full
    pixel = 600.0 / graph.plots["rtt"].vb.width()
    # The axis moves once per pixel of time (0.7 s on a 900 px plot), not 50 times;
    # the snapshots in between are drawn as tails.
    assert 5.0 / pixel - 2 <= moves <= 5.0 / pixel + 2
    assert tails >= 50 - moves - 1
    # Each move draws only the newest chunk or two of each plot again.
    assert graph.chunks_drawn - chunks <= 2 * moves * len(graph.plots)


def test_a_tail_is_drawn_only_when_it_reaches_a_new_pixel(long_run: LongRun) -> None:
    app, t = long_run
    graph = app.graph
    full = graph.full_redraws
    while graph.full_redraws == full:  # up to just after a move of the axis
        t += 0.1
        app.controller.apply(three_paths(t=t))
    full = graph.full_redraws
    drawn = graph.tails_drawn
    app.controller.apply(three_paths(t=t + 0.1))  # the same figures: no new pixel
    assert graph.full_redraws == full and graph.tails_drawn == drawn
    app.controller.apply(with_rtt(three_paths(t=t + 0.2), "tk", 95.0))  # 15 ms higher
    assert graph.full_redraws == full and graph.tails_drawn == drawn + 1
    app.controller.apply(with_rtt(three_paths(t=t + 0.3), "tk", 90.0))  # within it
    assert graph.tails_drawn == drawn + 1


def test_a_young_history_redraws_with_every_snapshot(braid: BraidApp, qtbot: QtBot) -> None:
    braid.show_paths()
    qtbot.waitUntil(braid.graph.isVisible)
    t = feed(braid, 1000.0, 50, rate=10.0)
    full = braid.graph.full_redraws
    feed(braid, t + 0.1, 20, rate=10.0)
    # 5 s in a view of at least 30 s: a snapshot moves the curves by several pixels.
    assert braid.graph.full_redraws == full + 20


def test_a_figure_beyond_the_plot_height_redraws_at_once(long_run: LongRun,
                                                       qtbot: QtBot) -> None:
    app, t = long_run
    graph = app.graph
    app.controller.apply(three_paths(t=t))
    (_, right), (_, top) = graph.plots["rtt"].viewRange()
    assert top < 500.0
    full = graph.full_redraws
    app.controller.apply(with_rtt(three_paths(t=t + 0.1), "tk", 500.0))
    assert t + 0.1 < right and graph.full_redraws == full + 1  # not waiting for a pixel
    qtbot.waitUntil(lambda: graph.plots["rtt"].viewRange()[1][1] >= 500.0)


def test_a_dead_path_breaks_its_curve_in_the_body_and_the_tail(long_run: LongRun) -> None:
    app, t = long_run
    graph = app.graph
    for i in range(40):
        app.controller.apply(with_rtt(three_paths(t=t + i / 10), "hk", None, up=False))
    _, y = graph.curve_points("hk", "rtt")
    assert np.isnan(y[-1]) and np.isfinite(y[0])
    _, loss = graph.curve_points("hk", "loss")
    assert loss[-1] == 100.0  # the loss curve carries on


def test_the_table_sets_only_the_cells_that_changed(braid: BraidApp, qtbot: QtBot) -> None:
    braid.show_paths()
    qtbot.waitUntil(braid.graph.isVisible)
    changed: list[tuple[int, int]] = []
    braid.graph.table.itemChanged.connect(lambda item: changed.append((item.row(), item.column())))
    t = feed(braid, 1000.0, 3)
    changed.clear()
    feed(braid, t + 0.2, 3)  # the same figures again
    assert changed == []
    braid.controller.apply(with_rtt(three_paths(t=t + 1), "tk", 81.0))
    assert sorted(set(changed)) == [(1, 2), (1, 3)]  # tk's RTT and RTT p95


def test_a_click_on_a_legend_entry_hides_that_path(braid: BraidApp, qtbot: QtBot) -> None:
    braid.show_paths()
    qtbot.waitUntil(braid.graph.isVisible)
    feed(braid, 1000.0, 10)
    legend = braid.graph.plots["rtt"].legend
    entries = {label.text: sample.item for sample, label in legend.items}
    assert set(entries) == {"hk", "tk", "sg"}
    entry = entries["tk"]
    assert isinstance(entry, LegendEntry)
    full = braid.graph.full_redraws
    entry.setVisible(False)  # what pyqtgraph's legend does on a click
    assert not braid.graph.paths["tk"].visible and braid.graph.full_redraws == full + 1
    entry.setVisible(True)
    assert braid.graph.paths["tk"].visible


def test_the_time_axes_share_their_ticks(braid: BraidApp, qtbot: QtBot) -> None:
    braid.show_paths()
    qtbot.waitUntil(braid.graph.isVisible)
    feed(braid, 1000.0, 10)
    *hidden, shown = [braid.graph.plots[m].getAxis("bottom") for m in braid.graph.plots]
    assert all(isinstance(a, TimeAxis) for a in (*hidden, shown))
    shared = shown._shared
    # Worked out once, when painted, for the range every plot shows: the first figures
    # can still change the window's layout, and the redraw after that resize sets the
    # range again (a CI run read the range before it).
    qtbot.waitUntil(lambda: all(a.range == shown.range for a in hidden)
                    and shared.get("key") == tuple(shown.range))
    lo, hi = shared["key"]
    # The axes without labels take the ticks as they are: no work of their own.
    assert all(a.tickValues(lo, hi, 800.0) is shared["values"] for a in hidden)
    assert shared["values"] and not any(a.style["showValues"] for a in hidden)


def test_chunks_left_of_the_view_are_dropped(long_run: LongRun) -> None:
    app, t = long_run
    graph = app.graph
    before = len(graph.layers["rtt"].chunks)
    pixel = 600.0 / graph.plots["rtt"].vb.width()
    # Move on by two chunks' worth of columns: as many chunks come as go.
    n = int(2 * CHUNK_COLUMNS * pixel * 10) + 10
    for i in range(n):
        app.controller.apply(three_paths(t=t + i / 10))
    assert abs(len(graph.layers["rtt"].chunks) - before) <= 1
    assert len(chunk_items(graph, "rtt")) == len(graph.layers["rtt"].chunks)


def test_the_window_says_where_realtime_is_copied_and_why(braid: BraidApp, qtbot: QtBot) -> None:
    braid.show_paths()
    qtbot.waitUntil(braid.graph.isVisible)
    s = replace(three_paths(), classes={"realtime": ("hk",), "default": ("hk",)},
                copies=("tk",), copies_reason="hk loses 3.0 %")
    braid.controller.apply(s)
    text = braid.graph._classes.text()
    assert text.splitlines() == ["Classes — realtime: hk · default: hk",
                                 "realtime on hk, copied onto tk: hk loses 3.0 %"]
    braid.controller.apply(replace(s, copies=(), copies_reason="off: the gateways have "
                                   "separate exits, so a copy would reach the far end from "
                                   "another address"))
    assert "separate exits, so a copy" in braid.graph._classes.text()
