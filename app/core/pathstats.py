"""Per-path measurement windows: RTT (last, smoothed, p50, p95, base), jitter, loss,
and how late replies have recently been.

Pure bookkeeping, no I/O: the tracker feeds it one outcome per probe (a reply with its
round-trip time, or a loss once the probe's hard timeout has passed), with the time,
and the scorer reads a ``PathMetrics``.

- Smoothed RTT and RTT variance follow RFC 6298 (alpha 1/8, beta 1/4), the estimator
  TCP uses.
- Jitter is RFC 3550's interarrival jitter applied to round-trip times:
  ``J += (|D| - J) / 16`` with ``D`` the difference between consecutive RTTs.
- The windows are spans of time with a floor in samples, so that they mean the same
  whatever the probe rate (10 ms on a carried path, 200 ms on a standby): loss over the
  last 10 s but at least 200 probes, p50/p95 over the last 10 s but at least 100
  replies.
- ``late_ms``: the largest amount by which a reply came later than the smoothed RTT in
  the last 10 s (1 s buckets): the path's own recent lateness, which liveness.py adds
  to the silence it tolerates before declaring the path down.
- ``base_rtt_ms``: the smallest RTT of the last 2 minutes (10 s buckets), the path's
  delay without a queue; the smoothed RTT above it is queueing (scoring.py, "full").
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

LOSS_SPAN_S, MIN_LOSS_SAMPLES = 10.0, 200
RTT_SPAN_S, MIN_RTT_SAMPLES = 10.0, 100
LATE_BUCKET_S, LATE_BUCKETS = 1.0, 10
BASE_BUCKET_S, BASE_BUCKETS = 10.0, 12


@dataclass(frozen=True)
class PathMetrics:
    """What one path measured, as the scorer and the snapshot see it."""

    rtt_ms: float | None  # last reply
    rtt_smoothed_ms: float | None
    rttvar_ms: float | None
    rtt_p50_ms: float | None
    rtt_p95_ms: float | None
    jitter_ms: float | None
    loss: float  # 0..1 over the window
    samples: int  # probes with a known fate in the window


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank-with-interpolation percentile of an already sorted, non-empty list."""
    if not sorted_values:
        raise ValueError("percentile of an empty list")
    pos = (len(sorted_values) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = pos - lo
    return sorted_values[lo] * (1 - frac) + sorted_values[hi] * frac


class _Buckets:
    """The max (or min) of a value per fixed time bucket, over the last ``n`` buckets."""

    def __init__(self, span_s: float, n: int, *, largest: bool) -> None:
        self.span_s = span_s
        self._n = n
        self._sign = 1.0 if largest else -1.0  # kept as a max of sign * value
        self._b: deque[tuple[int, float]] = deque(maxlen=n)
        self._cache: tuple[int | None, int, float | None] | None = None  # read per probe
        self._version = 0

    def add(self, t: float, value: float) -> None:
        k, v = int(t // self.span_s), self._sign * value
        if self._b and self._b[-1][0] == k:
            if v <= self._b[-1][1]:
                return
            self._b[-1] = (k, v)
        else:
            self._b.append((k, v))
        self._version += 1

    def value(self, now: float | None) -> float | None:
        oldest = None if now is None else int(now // self.span_s) - self._n + 1
        c = self._cache
        if c is not None and c[0] == oldest and c[1] == self._version:
            return c[2]
        vals = [v for k, v in self._b if oldest is None or k >= oldest]
        out = self._sign * max(vals) if vals else None
        self._cache = (oldest, self._version, out)
        return out


class PathStats:
    """Sliding windows over one path's probe outcomes."""

    def __init__(self, loss_window: int = MIN_LOSS_SAMPLES,
                 rtt_window: int = MIN_RTT_SAMPLES, *, loss_span_s: float = LOSS_SPAN_S,
                 rtt_span_s: float = RTT_SPAN_S) -> None:
        if loss_window < 1 or rtt_window < 1:
            raise ValueError("windows must hold at least one sample")
        self._min_outcomes, self._min_rtts = loss_window, rtt_window
        self._loss_span, self._rtt_span = loss_span_s, rtt_span_s
        self._outcomes: deque[tuple[float, bool]] = deque()  # (t, answered)
        self._lost_in_window = 0
        self._rtts: deque[tuple[float, float]] = deque()
        self._sorted: list[float] = []  # the window's RTTs in order: O(1) percentiles
        self._late = _Buckets(LATE_BUCKET_S, LATE_BUCKETS, largest=True)
        self._base = _Buckets(BASE_BUCKET_S, BASE_BUCKETS, largest=False)
        self._now: float | None = None
        self.last_rtt_ms: float | None = None
        self.srtt_ms: float | None = None
        self.rttvar_ms: float | None = None
        self.jitter_ms: float | None = None

    def _push_outcome(self, answered: bool, now: float | None) -> None:
        t = self._clock(now)
        self._outcomes.append((t, answered))
        if not answered:
            self._lost_in_window += 1
        while len(self._outcomes) > self._min_outcomes and (
                now is None or self._outcomes[0][0] < t - self._loss_span):
            if not self._outcomes.popleft()[1]:
                self._lost_in_window -= 1

    def _clock(self, now: float | None) -> float:
        if now is None:
            return self._now if self._now is not None else 0.0
        self._now = now if self._now is None else max(self._now, now)
        return now

    def add_reply(self, rtt_ms: float, now: float | None = None) -> None:
        """A probe was answered after ``rtt_ms`` milliseconds (at ``now``, seconds;
        without it the windows count samples only)."""
        if rtt_ms < 0:
            raise ValueError(f"negative RTT {rtt_ms}")
        self._push_outcome(True, now)
        t = self._clock(now)
        self._rtts.append((t, rtt_ms))
        bisect.insort(self._sorted, rtt_ms)
        while len(self._rtts) > self._min_rtts and (
                now is None or self._rtts[0][0] < t - self._rtt_span):
            del self._sorted[bisect.bisect_left(self._sorted, self._rtts.popleft()[1])]
        if self.srtt_ms is None or self.rttvar_ms is None:
            self.srtt_ms = rtt_ms
            self.rttvar_ms = rtt_ms / 2
        else:
            self._late.add(t, max(0.0, rtt_ms - self.srtt_ms))
            self.rttvar_ms += (abs(self.srtt_ms - rtt_ms) - self.rttvar_ms) / 4
            self.srtt_ms += (rtt_ms - self.srtt_ms) / 8
        self._base.add(t, rtt_ms)
        if self.last_rtt_ms is not None:
            d = abs(rtt_ms - self.last_rtt_ms)
            self.jitter_ms = d / 16 if self.jitter_ms is None else self.jitter_ms + (
                d - self.jitter_ms) / 16
        self.last_rtt_ms = rtt_ms

    def add_loss(self, now: float | None = None) -> None:
        """A probe got no answer within its hard timeout."""
        self._push_outcome(False, now)

    @property
    def loss(self) -> float:
        return self._lost_in_window / len(self._outcomes) if self._outcomes else 0.0

    @property
    def samples(self) -> int:
        return len(self._outcomes)

    def late_ms(self, now: float | None = None) -> float:
        """How much later than the smoothed RTT the latest reply of the last 10 s came."""
        return self._late.value(now if now is not None else self._now) or 0.0

    def base_rtt_ms(self, now: float | None = None) -> float | None:
        """The smallest RTT of the last 2 minutes: the path without a queue."""
        return self._base.value(now if now is not None else self._now)

    def metrics(self) -> PathMetrics:
        ordered = self._sorted
        return PathMetrics(
            rtt_ms=self.last_rtt_ms,
            rtt_smoothed_ms=self.srtt_ms,
            rttvar_ms=self.rttvar_ms,
            rtt_p50_ms=percentile(ordered, 0.5) if ordered else None,
            rtt_p95_ms=percentile(ordered, 0.95) if ordered else None,
            jitter_ms=self.jitter_ms,
            loss=self.loss,
            samples=len(self._outcomes),
        )
