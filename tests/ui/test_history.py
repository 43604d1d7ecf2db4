from __future__ import annotations

import math

import numpy as np
import pytest

from app.core.model import ConnState, EventKind
from app.ui.history import PathHistory, Series
from tests.ui.snapshots import path, snap, switch, three_paths


def test_series_keeps_only_the_span_and_grows_when_full() -> None:
    s = Series(capacity=4)
    for i in range(100):
        s.append(float(i), (i, 0, 0, 0), keep_after=i - 9.5)
    assert s.times().tolist() == [float(i) for i in range(90, 100)]
    assert s.values("rtt").tolist() == [float(i) for i in range(90, 100)]
    assert s.times().flags["C_CONTIGUOUS"]


def test_history_records_every_path_and_a_gap_when_disconnected() -> None:
    h = PathHistory(span_s=600)
    for i in range(5):
        h.add(three_paths(t=1000.0 + i))
    h.add(snap(ConnState.DISCONNECTED, t=1005.0))
    h.add(snap(ConnState.DISCONNECTED, t=1006.0))
    assert h.names() == ["hk", "tk", "sg"]
    rtt = h.series("hk").values("rtt")
    assert rtt[:5].tolist() == [60.0] * 5
    assert len(rtt) == 6 and math.isnan(rtt[5])  # one gap, not one per snapshot
    assert h.series("tk").values("loss").tolist()[:5] == [0.0] * 5
    assert h.series("sg").values("score")[0] == 0.8


def test_down_path_has_no_rtt_point() -> None:
    h = PathHistory()
    h.add(snap(paths=(path("hk", None, up=False, jitter=None, loss=1.0, score=0.0),), t=5.0))
    s = h.series("hk")
    assert np.isnan(s.values("rtt")[0]) and s.values("loss")[0] == 100.0


def test_markers_once_per_event_and_dropped_after_the_span() -> None:
    h = PathHistory(span_s=60)
    ev = switch("hk", "tk", t=1010.0)
    for i in range(3):
        h.add(snap(events=(ev,), t=1011.0 + i))
    assert [(m.t, m.kind, m.label) for m in h.markers()] == [(1010.0, "switch", "default → tk")]
    h.add(snap(events=(ev,), t=1080.0))
    assert h.markers() == []


def test_a_dead_path_breaks_its_rtt_curve_but_keeps_its_loss() -> None:
    h = PathHistory()
    h.add(snap(paths=(path("hk", 44.0, up=False, loss=0.2, score=0.0),), t=5.0))
    s = h.series("hk")
    assert np.isnan(s.values("rtt")[0]) and np.isnan(s.values("jitter")[0])
    assert s.values("loss")[0] == pytest.approx(20.0)


def test_first_placement_is_not_a_switch_marker() -> None:
    h = PathHistory()
    first = switch("hk", "tk", t=1.0, kind=EventKind.PLACED)
    first = type(first)(**{**first.__dict__, "from_path": None})
    h.add(snap(events=(first,), t=2.0))
    assert h.markers() == []


def test_series_counts_every_sample_appended_so_readers_find_the_new_ones() -> None:
    s = Series(capacity=4)
    for i in range(30):
        s.append(float(i), (i, 2 * i, 0, 0), keep_after=i - 9.5)
    assert s.appended == 30 and len(s) == 10
    taken = 27  # a reader that took 27 samples finds the other 3 at the end
    new = s.appended - taken
    assert s.times()[-new:].tolist() == [27.0, 28.0, 29.0]
    assert s.rows()[:, -new:][1].tolist() == [54.0, 56.0, 58.0]
