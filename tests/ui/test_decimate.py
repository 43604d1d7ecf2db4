from __future__ import annotations

import math
import random

import numpy as np
import pytest

from app.ui.decimate import Columns, column_width

NAN = math.nan


def reference(t: list[float], v: list[float], width: float) -> list[tuple[float, float]]:
    """The points Columns.curve promises, computed sample by sample in plain Python."""
    out: list[tuple[float, float]] = []
    groups: dict[float, list[tuple[float, float]]] = {}
    for ti, vi in zip(t, v, strict=True):
        groups.setdefault(math.floor(ti / width), []).append((ti, vi))
    for samples in groups.values():
        finite = [(ti, vi) for ti, vi in samples if not math.isnan(vi)]
        if not finite:
            out.append((samples[-1][0], NAN))
            continue
        lo = min(finite, key=lambda s: (s[1], s[0]))
        hi = max(finite, key=lambda s: (s[1], -s[0]))
        first, second = sorted((lo, hi))
        if math.isnan(samples[0][1]):
            out.append((samples[0][0], NAN))
        out.append(first)
        if second != first:
            out.append(second)
        if any(math.isnan(vi) for ti, vi in samples if ti > finite[0][0]):
            out.append((samples[-1][0], NAN))
    collapsed: list[tuple[float, float]] = []
    for point in out:
        if collapsed and math.isnan(point[1]) and math.isnan(collapsed[-1][1]):
            continue
        collapsed.append(point)
    return collapsed


def points(columns: Columns, metric: int) -> list[tuple[float, float]]:
    x, y = columns.curve(metric)
    return list(zip(x.tolist(), y.tolist(), strict=True))


def same(got: list[tuple[float, float]], want: list[tuple[float, float]]) -> bool:
    """Equal, NaN equal to NaN; a NaN's time does not matter (it only breaks the line)."""
    return len(got) == len(want) and all(
        (math.isnan(gy) and math.isnan(wy)) or (gx == wx and gy == wy)
        for (gx, gy), (wx, wy) in zip(got, want, strict=True)
    )


def noisy(n: int, seed: int, gaps: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    rng = random.Random(seed)
    t = np.cumsum([0.1] * n) + 1000.0
    rows = []
    for metric in range(2):
        row = [rng.choice((1.0, 2.0, 3.0)) if metric else rng.gauss(50, 5) for _ in range(n)]
        # Outages of a few samples, as a dead path leaves.
        i = 0
        while i < n:
            if rng.random() < gaps / 5:
                for j in range(i, min(n, i + rng.randint(1, 12))):
                    row[j] = NAN
                i += 12
            i += 1
        rows.append(row)
    return t, np.array(rows)


@pytest.mark.parametrize("seed", range(8))
def test_fed_in_any_batches_the_columns_match_a_sample_by_sample_reference(seed: int) -> None:
    t, v = noisy(900, seed)
    width = column_width([0.07, 0.35, 0.69, 2.0][seed % 4])
    whole = Columns(width, metrics=2)
    whole.extend(t, v)
    pieces = Columns(width, metrics=2, capacity=4)
    rng = random.Random(seed)
    i = 0
    while i < len(t):
        j = i + rng.choice((1, 1, 1, 2, 7, 50))
        pieces.extend(t[i:j], v[:, i:j])
        i = j
    for metric in range(2):
        want = reference(t.tolist(), v[metric].tolist(), width)
        assert same(points(whole, metric), want)
        assert same(points(pieces, metric), want)


def test_a_curve_has_at_most_two_points_per_column_and_breaks_once_per_gap() -> None:
    t = np.arange(6000) * 0.1  # ten minutes at 10 Hz
    v = np.vstack([50 + 10 * np.sin(t), np.full_like(t, 0.8)])
    v[0, 3000:3100] = NAN  # a path dead for 10 s
    c = Columns(column_width(600 / 870), metrics=2)
    c.extend(t, v)
    x, y = c.curve(0)
    assert len(y) <= 2 * len(c) + 2
    assert np.count_nonzero(np.isnan(y)) == 1
    assert np.all(np.diff(x[~np.isnan(y)]) >= 0)
    _, flat_y = c.curve(1)
    assert len(flat_y) == len(c) and set(flat_y.tolist()) == {0.8}  # one point per column


@pytest.mark.parametrize("seed", range(4))
def test_a_curve_drawn_in_pieces_of_columns_joins_into_the_whole(seed: int) -> None:
    t, v = noisy(900, seed, gaps=0.3)
    c = Columns(column_width(0.35), metrics=2)
    c.extend(t, v)
    keys = c.keys()
    assert keys is not None
    for metric in range(2):
        joined: list[tuple[float, float]] = []
        for first in range(keys[0] - keys[0] % 16, keys[1] + 1, 16):
            piece = points_of(c.curve(metric, (first, first + 15), lead_in=True))
            if joined and piece:
                # The piece starts where the one before ended: that is how they join.
                assert same(piece[:1], joined[-1:])
                piece = piece[1:]
            joined += piece
        collapsed = [p for i, p in enumerate(joined)
                     if not (i and math.isnan(p[1]) and math.isnan(joined[i - 1][1]))]
        assert same(collapsed, points(c, metric))


def points_of(curve: tuple[np.ndarray, np.ndarray]) -> list[tuple[float, float]]:
    x, y = curve
    return list(zip(x.tolist(), y.tolist(), strict=True))


def test_extent_is_the_lowest_and_highest_finite_value() -> None:
    c = Columns(1.0, metrics=2)
    c.extend(np.arange(30) * 0.1, np.array([[NAN] * 10 + list(range(20)), [NAN] * 30]))
    assert c.extent(0) == (0.0, 19.0) and c.extent(1) is None


def test_an_outage_shorter_than_a_column_still_breaks_the_curve() -> None:
    t = np.arange(20) * 0.1
    v = np.array([[5.0] * 8 + [NAN] + [5.0] * 11])
    c = Columns(1.0, metrics=1)
    c.extend(t, v)
    _, y = c.curve(0)
    assert np.count_nonzero(np.isnan(y)) == 1
    # The path came back in the same column: the break comes after its figures, and the
    # next column starts a new line.
    assert y.tolist()[:1] == [5.0] and math.isnan(y[1])


def test_trim_forgets_whole_columns_before_a_time() -> None:
    c = Columns(1.0, metrics=1)
    c.extend(np.arange(50) * 0.1, np.ones((1, 50)))
    assert len(c) == 5 and c.last_t == pytest.approx(4.9)
    c.trim(2.5)
    x, _ = c.curve(0)
    assert len(c) == 3 and x[0] == pytest.approx(2.0)  # the column 2.0..2.9 ends after 2.5


@pytest.mark.parametrize("pixel_s", [0.01, 0.0345, 0.1, 0.69, 1.0, 7.3])
def test_column_width_is_at_most_a_pixel_and_moves_in_steps(pixel_s: float) -> None:
    width = column_width(pixel_s)
    assert pixel_s / 2 ** 0.25 < width <= pixel_s
    assert column_width(width) == width  # on the ladder
    assert column_width(pixel_s * 1.01) in (width, column_width(pixel_s * 1.2))


def test_bad_widths_are_refused() -> None:
    for bad in (0.0, -1.0, math.inf, math.nan):
        with pytest.raises(ValueError, match="positive time"):
            column_width(bad)
    with pytest.raises(ValueError, match="wider than 0"):
        Columns(0.0, metrics=1)
