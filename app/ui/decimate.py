"""Min/max per time column of a path's figures, kept up to date a few samples at a time.

A plot of ten minutes at 10 Hz has some 900 pixel columns for 6000 samples: drawing
every sample strokes each pixel column six times over and makes the drawing cost grow
with the span. Columns keeps, for columns at most one pixel wide, each metric's lowest
and highest value (in the order they came, with their times) and where its curve
breaks, so a curve of the whole span has at most about two points per column whatever
the span holds. A new sample updates the last column or opens one (O(1) per sample);
nothing is recomputed over the span. The curve drawn from the columns lights the same
pixels as the samples would, to within a pixel: each column's vertical extent is exact,
and only the line joining two columns may differ by a pixel.

Breaks are kept: a column holding no finite value is a gap; one whose values start
after a gap, or that holds a gap after a finite value, breaks the curve before or after
its extremes, so an outage shorter than a pixel still shows as a break.

Pure numpy, no Qt, time given by the samples.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

# Per-metric fields of a column, rows of Columns._m.
LO, HI, LO_T, HI_T, FINITE_T, NAN_T = range(6)
# Shared fields: the column's key (index of its time slot), first and last sample time.
KEY, T0, T1 = range(3)

LADDER_STEPS = 4  # column widths per doubling: a column is 1/2^(1/4) to 1 pixel wide


def column_width(pixel_s: float) -> float:
    """The widest width on a fixed ladder (powers of 2^(1/4) seconds) that is not wider
    than one pixel: the columns then keep their width while the plot's scale drifts by
    up to 19 %, instead of being rebuilt on every change of scale."""
    if not pixel_s > 0 or math.isinf(pixel_s):
        raise ValueError(f"a pixel must span a positive time, not {pixel_s!r} s")
    return float(2.0 ** (math.floor(math.log2(pixel_s) * LADDER_STEPS) / LADDER_STEPS))


class Columns:
    """Columns of `width_s` seconds for `metrics` figures sampled at the same times."""

    def __init__(self, width_s: float, metrics: int, capacity: int = 256) -> None:
        if not width_s > 0:
            raise ValueError(f"a column must be wider than 0 s, not {width_s!r}")
        self.width_s = width_s
        self.metrics = metrics
        self._s: FloatArray = np.empty((3, capacity))
        self._m: FloatArray = np.empty((6, metrics, capacity))
        self._start = 0
        self._end = 0

    def __len__(self) -> int:
        return self._end - self._start

    @property
    def last_t(self) -> float | None:
        """Time of the newest sample taken in."""
        return float(self._s[T1, self._end - 1]) if len(self) else None

    def extend(self, t: FloatArray, values: FloatArray) -> None:
        """Take in samples at times `t` (ascending, after every sample before) with
        `values[metric, i]` (NaN: no figure, the curve breaks)."""
        if t.shape[0] == 0:
            return
        new_s, new_m = self._columns_of(t, values)
        n = new_s.shape[1]
        if len(self) and new_s[KEY, 0] == self._s[KEY, self._end - 1]:
            self._merge_into_last(new_s[:, 0], new_m[:, :, 0])
            new_s, new_m, n = new_s[:, 1:], new_m[:, :, 1:], n - 1
        if n:
            self._reserve(n)
            self._s[:, self._end:self._end + n] = new_s
            self._m[:, :, self._end:self._end + n] = new_m
            self._end += n

    def trim(self, before_t: float) -> None:
        """Forget the columns whose last sample is older than `before_t`."""
        last = self._s[T1, self._start:self._end]
        self._start += int(np.searchsorted(last, before_t, side="left"))

    def keys(self) -> tuple[int, int] | None:
        """The first and last column's key (its start time over the width)."""
        if not len(self):
            return None
        return int(self._s[KEY, self._start]), int(self._s[KEY, self._end - 1])

    def extent(self, metric: int) -> tuple[float, float] | None:
        """The lowest and highest value of a metric over the columns (None: no finite
        value)."""
        lo = self._m[LO, metric, self._start:self._end]
        hi = self._m[HI, metric, self._start:self._end]
        finite = ~np.isnan(lo)
        if not finite.any():
            return None
        return float(lo[finite].min()), float(hi[finite].max())

    def curve(self, metric: int, keys: tuple[int, int] | None = None,
              lead_in: bool = False) -> tuple[FloatArray, FloatArray]:
        """The points to draw for a metric, in time order: per column its first and its
        second extreme (one if they are the same sample), with a NaN where the curve
        breaks (one NaN for a run of empty columns). With `keys` (first, last), only
        those columns; with `lead_in`, the last point of the column before them first,
        so that curves drawn in pieces join."""
        i0, i1 = self._start, self._end
        if keys is not None:
            live = self._s[KEY, i0:i1]
            i0, i1 = (i0 + int(np.searchsorted(live, keys[0], side="left")),
                      i0 + int(np.searchsorted(live, keys[1], side="right")))
        j0 = i0 - 1 if lead_in and i0 > self._start else i0
        s = self._s[:, j0:i1]
        lo, hi, lo_t, hi_t, finite_t, nan_t = self._m[:, metric, j0:i1]
        has = ~np.isnan(lo)
        lo_first = lo_t <= hi_t
        a = np.where(lo_first, lo, hi)
        b = np.where(lo_first, hi, lo)
        at = np.where(lo_first, lo_t, hi_t)
        bt = np.where(lo_first, hi_t, lo_t)
        nan = np.full_like(a, np.nan)
        ys = np.stack([nan, a, b, nan], axis=1)
        xs = np.stack([s[T0], at, bt, s[T1]], axis=1)
        keep = np.stack([
            has & (finite_t > s[T0]),  # a gap before its first finite value
            has,
            has & (at != bt),
            ~has | (nan_t > finite_t),  # empty, or a gap after a finite value
        ], axis=1)
        if j0 < i0 and keep.shape[0]:
            last = int(np.flatnonzero(keep[0])[-1])
            keep[0, :last] = False
        x, y = xs[keep], ys[keep]
        gap = np.isnan(y)
        repeat: BoolArray = np.zeros_like(gap)
        repeat[1:] = gap[1:] & gap[:-1]
        return x[~repeat], y[~repeat]

    # -- inside --------------------------------------------------------------------------
    def _columns_of(self, t: FloatArray, values: FloatArray) -> tuple[FloatArray, FloatArray]:
        """The columns of one batch of samples, computed over the batch only."""
        if t.shape[0] == 1:  # the common case, a snapshot at a time: no reductions
            t0 = float(t[0])
            finite = np.isfinite(values[:, 0])
            at = np.where(finite, t0, np.inf)
            one = np.empty((6, self.metrics, 1))
            one[LO, :, 0] = one[HI, :, 0] = values[:, 0]
            one[LO_T, :, 0] = one[HI_T, :, 0] = one[FINITE_T, :, 0] = at
            one[NAN_T, :, 0] = np.where(finite, -np.inf, t0)
            return np.array([[math.floor(t0 / self.width_s)], [t0], [t0]]), one
        keys = np.floor(t / self.width_s)
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
        ends = np.r_[starts[1:], t.shape[0]]
        shared = np.stack([keys[starts], t[starts], t[ends - 1]])
        col = np.repeat(np.arange(starts.shape[0]), ends - starts)
        lo = np.fmin.reduceat(values, starts, axis=1)
        hi = np.fmax.reduceat(values, starts, axis=1)
        inf = np.inf
        finite = np.isfinite(values)
        per = np.empty((6, self.metrics, starts.shape[0]))
        per[LO], per[HI] = lo, hi
        # The first time each extreme was reached keeps the order they came in.
        per[LO_T] = np.minimum.reduceat(np.where(values == lo[:, col], t, inf), starts, axis=1)
        per[HI_T] = np.minimum.reduceat(np.where(values == hi[:, col], t, inf), starts, axis=1)
        per[FINITE_T] = np.minimum.reduceat(np.where(finite, t, inf), starts, axis=1)
        per[NAN_T] = np.maximum.reduceat(np.where(finite, -inf, t), starts, axis=1)
        return shared, per

    def _merge_into_last(self, s: FloatArray, m: FloatArray) -> None:
        """Fold a batch's first column into the last one kept (same time slot)."""
        i = self._end - 1
        old = self._m[:, :, i]
        new_lo = (m[LO] < old[LO]) | (np.isnan(old[LO]) & ~np.isnan(m[LO]))
        new_hi = (m[HI] > old[HI]) | (np.isnan(old[HI]) & ~np.isnan(m[HI]))
        old[LO_T] = np.where(new_lo, m[LO_T], old[LO_T])
        old[HI_T] = np.where(new_hi, m[HI_T], old[HI_T])
        old[LO] = np.fmin(old[LO], m[LO])
        old[HI] = np.fmax(old[HI], m[HI])
        old[FINITE_T] = np.minimum(old[FINITE_T], m[FINITE_T])
        old[NAN_T] = np.maximum(old[NAN_T], m[NAN_T])
        self._s[T1, i] = s[T1]

    def _reserve(self, n: int) -> None:
        capacity = self._s.shape[1]
        if self._end + n <= capacity:
            return
        live = len(self)
        if live + n > capacity // 2:
            capacity = max(2 * capacity, 2 * (live + n))
        s: FloatArray = np.empty((3, capacity))
        m: FloatArray = np.empty((6, self.metrics, capacity))
        s[:, :live] = self._s[:, self._start:self._end]
        m[:, :, :live] = self._m[:, :, self._start:self._end]
        self._s, self._m, self._start, self._end = s, m, 0, live
