"""The last minutes of every path's figures, for the graph window.

Kept apart from the window so it fills while the window is hidden (opening it shows
the past, not an empty plot) and so that drawing never owns the data. Numpy arrays
with a moving start: appending is O(1) amortised, trimming is a binary search, and
the plots get contiguous views without copying.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.core.model import EngineSnapshot, EventKind, PathSnapshot

FloatArray = npt.NDArray[np.float64]

# Rows of Series.values, in plot order.
METRICS: tuple[str, ...] = ("rtt", "jitter", "loss", "score")
NAN = math.nan


def metric_row(path: PathSnapshot) -> tuple[float, float, float, float]:
    """The plotted figures of a path: RTT and jitter in ms (NaN while there is none or
    the path is down, which breaks the curve: a dead path's last RTT is not a figure),
    loss in percent, score 0..1."""
    rtt = path.rtt_smoothed_ms if path.rtt_smoothed_ms is not None else path.rtt_ms
    alive = path.up
    return (
        NAN if rtt is None or not alive else rtt,
        NAN if path.jitter_ms is None or not alive else path.jitter_ms,
        path.loss * 100.0,
        path.score,
    )


class Series:
    """Time-stamped rows of METRICS for one path."""

    def __init__(self, capacity: int = 1024) -> None:
        self._t: FloatArray = np.empty(capacity)
        self._v: FloatArray = np.empty((len(METRICS), capacity))
        self._start = 0
        self._end = 0
        # Samples appended since the start, trimmed or not: a reader that took the first
        # `k` of them finds the rest as the last `appended - k` (while that is <= len).
        self.appended = 0

    def __len__(self) -> int:
        return self._end - self._start

    def append(self, t: float, row: tuple[float, ...], keep_after: float) -> None:
        if self._end == self._t.shape[0]:
            self._make_room(keep_after)
        self._t[self._end] = t
        self._v[:, self._end] = row
        self._end += 1
        self.appended += 1
        self.trim(keep_after)

    def last_is_gap(self) -> bool:
        return len(self) == 0 or bool(np.isnan(self._v[0, self._end - 1]))

    def _make_room(self, keep_after: float) -> None:
        self.trim(keep_after)
        n = len(self)
        capacity = self._t.shape[0]
        if n > capacity // 2:
            capacity *= 2  # mostly live data: grow rather than compact again soon
        t: FloatArray = np.empty(capacity)
        v: FloatArray = np.empty((len(METRICS), capacity))
        t[:n] = self._t[self._start:self._end]
        v[:, :n] = self._v[:, self._start:self._end]
        self._t, self._v, self._start, self._end = t, v, 0, n

    def trim(self, keep_after: float) -> None:
        live = self._t[self._start:self._end]
        self._start += int(np.searchsorted(live, keep_after, side="left"))

    def times(self) -> FloatArray:
        return self._t[self._start:self._end]

    def values(self, metric: str) -> FloatArray:
        return self._v[METRICS.index(metric), self._start:self._end]

    def rows(self) -> FloatArray:
        """Every metric at once, `rows()[METRICS.index(m), i]` (a view, no copy)."""
        return self._v[:, self._start:self._end]


# Events that get a marker on the graph, and its style.
MARKER_KINDS = {EventKind.BETTER_PATH: "switch", EventKind.FAILOVER: "switch",
                EventKind.BLOCKED: "fail_closed"}


@dataclass(frozen=True)
class Marker:
    """A moment traffic moved: a switch, or all paths lost."""

    t: float
    kind: str  # "switch" | "fail_closed"
    label: str


class PathHistory:
    def __init__(self, span_s: float = 600.0) -> None:
        self.span_s = span_s
        self._series: dict[str, Series] = {}
        self._markers: dict[tuple[float, str, str | None, str | None], Marker] = {}
        self.latest_t = 0.0

    def earliest_t(self) -> float | None:
        """The oldest sample still kept, over all paths."""
        starts = [s.times()[0] for s in self._series.values() if len(s)]
        return float(min(starts)) if starts else None

    def names(self) -> list[str]:
        """Paths in order of first appearance, so colours stay put."""
        return list(self._series)

    def series(self, name: str) -> Series:
        return self._series[name]

    def markers(self) -> list[Marker]:
        return sorted(self._markers.values(), key=lambda m: m.t)

    def add(self, snapshot: EngineSnapshot) -> None:
        t = snapshot.t
        self.latest_t = max(self.latest_t, t)
        keep_after = t - self.span_s
        present = set()
        for path in snapshot.paths:
            present.add(path.name)
            series = self._series.setdefault(path.name, Series())
            series.append(t, metric_row(path), keep_after)
        for name, series in self._series.items():
            # A path that left the snapshot (disconnected) gets a gap, not a line
            # drawn straight across the time it was away.
            if name not in present and not series.last_is_gap():
                series.append(t, (NAN,) * len(METRICS), keep_after)
            series.trim(keep_after)
        for event in snapshot.events:
            # The first placement on connecting is not a switch: traffic did not move.
            kind = MARKER_KINDS.get(event.kind)
            if kind is None:
                continue
            key = (event.t, kind, event.cls, event.to_path)
            if key not in self._markers and event.t >= keep_after:
                if kind == "switch":
                    label = f"{event.cls or 'traffic'} → {event.to_path}"
                else:
                    label = "all paths lost"
                self._markers[key] = Marker(event.t, kind, label)
        self._markers = {k: m for k, m in self._markers.items() if m.t >= keep_after}
