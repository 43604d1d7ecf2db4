from __future__ import annotations

import math

import pyqtgraph as pg
import pytest
from pytestqt.qtbot import QtBot

from app.ui.plot_layers import TailLayer, _short_path, nice_step, steady_range


@pytest.mark.parametrize(("span", "step"), [(80.0, 10.0), (7.0, 1.0), (0.5, 0.1), (160.0, 20.0),
                                            (400.0, 50.0)])
def test_nice_step_is_a_1_2_5_step_near_an_eighth_of_the_span(span: float, step: float) -> None:
    assert nice_step(span) == pytest.approx(step)


def test_the_steady_range_holds_while_the_data_fit_and_fill_it() -> None:
    first = steady_range(55.0, 110.0, None)
    assert first == (40.0, 120.0)  # rounded out to 10s, one step of room each side
    assert steady_range(52.0, 115.0, first) is first  # a new extreme within the room
    grown = steady_range(52.0, 140.0, first)
    assert grown[1] >= 140.0 and grown != first
    shrunk = steady_range(60.0, 70.0, grown)  # the data now fill too little of it
    assert shrunk[0] <= 60.0 and shrunk[1] >= 70.0 and shrunk[1] - shrunk[0] < 40.0


def test_the_steady_range_stays_within_what_the_metric_can_reach() -> None:
    assert steady_range(0.0, 100.0, None, ceiling=100.0) == (0.0, 100.0)
    lo, hi = steady_range(0.0, 0.0, None, ceiling=100.0)  # no loss at all
    assert lo == 0.0 and 0.0 < hi <= 100.0
    assert steady_range(3.0, 4.0, None)[0] >= 0.0  # delays are never below 0


def test_a_short_path_breaks_at_nan_and_bounds_only_the_finite_points() -> None:
    path, bounds = _short_path([0.0, 1.0, 2.0, 3.0, 4.0], [5.0, 6.0, math.nan, 7.0, 9.0])
    assert bounds is not None
    assert (bounds.left(), bounds.right(), bounds.top(), bounds.bottom()) == (0.0, 4.0, 5.0, 9.0)
    moves = [path.elementAt(i).isMoveTo() for i in range(path.elementCount())]
    assert moves == [True, False, True, False]  # two pieces: 0-1 and 3-4
    _, none = _short_path([0.0, 1.0], [math.nan, math.nan])
    assert none is None


def test_a_tail_layer_keeps_each_paths_tail_until_cleared(qtbot: QtBot) -> None:
    layer = TailLayer()
    pen = pg.mkPen("#000")
    layer.set_tails([(0, pen, [0.0, 1.0], [1.0, 2.0])])
    layer.set_tails([(1, pen, [0.5, 1.5], [10.0, 20.0])])
    rect = layer.boundingRect()
    assert rect.top() <= 1.0 and rect.bottom() >= 20.0  # both tails
    layer.clear()
    assert layer.boundingRect().isNull()
