"""Per-path measurement windows: RTT (last, smoothed, p50, p95), jitter, loss.

Pure bookkeeping, no I/O: the prober feeds it one outcome per probe (a reply with its
round-trip time, or a loss once the probe's hard timeout has passed) and the scorer
reads a ``PathMetrics``.

- Smoothed RTT and RTT variance follow RFC 6298 (alpha 1/8, beta 1/4), the same
  estimator TCP uses, so ``srtt + 4 * rttvar`` is a well-understood "late" threshold.
- Jitter is RFC 3550's interarrival jitter applied to round-trip times:
  ``J += (|D| - J) / 16`` with ``D`` the difference between consecutive RTTs.
- p50/p95 are over the last ``rtt_window`` replies; loss is the fraction lost among
  the last ``loss_window`` probes whose fate is known.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

DEFAULT_LOSS_WINDOW = 200  # 10 s at the active rate (50 ms), 40 s on a standby (200 ms)
DEFAULT_RTT_WINDOW = 100


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


class PathStats:
    """Sliding windows over one path's probe outcomes."""

    def __init__(
        self, loss_window: int = DEFAULT_LOSS_WINDOW, rtt_window: int = DEFAULT_RTT_WINDOW
    ) -> None:
        if loss_window < 1 or rtt_window < 1:
            raise ValueError("windows must hold at least one sample")
        self._outcomes: deque[bool] = deque(maxlen=loss_window)  # True = answered
        self._lost_in_window = 0
        self._rtts: deque[float] = deque(maxlen=rtt_window)
        self.last_rtt_ms: float | None = None
        self.srtt_ms: float | None = None
        self.rttvar_ms: float | None = None
        self.jitter_ms: float | None = None

    def _push_outcome(self, answered: bool) -> None:
        if len(self._outcomes) == self._outcomes.maxlen and not self._outcomes[0]:
            self._lost_in_window -= 1
        self._outcomes.append(answered)
        if not answered:
            self._lost_in_window += 1

    def add_reply(self, rtt_ms: float) -> None:
        """A probe was answered after ``rtt_ms`` milliseconds."""
        if rtt_ms < 0:
            raise ValueError(f"negative RTT {rtt_ms}")
        self._push_outcome(True)
        self._rtts.append(rtt_ms)
        if self.srtt_ms is None or self.rttvar_ms is None:
            self.srtt_ms = rtt_ms
            self.rttvar_ms = rtt_ms / 2
        else:
            self.rttvar_ms += (abs(self.srtt_ms - rtt_ms) - self.rttvar_ms) / 4
            self.srtt_ms += (rtt_ms - self.srtt_ms) / 8
        if self.last_rtt_ms is not None:
            d = abs(rtt_ms - self.last_rtt_ms)
            self.jitter_ms = d / 16 if self.jitter_ms is None else self.jitter_ms + (
                d - self.jitter_ms) / 16
        self.last_rtt_ms = rtt_ms

    def add_loss(self) -> None:
        """A probe got no answer within its hard timeout."""
        self._push_outcome(False)

    @property
    def loss(self) -> float:
        return self._lost_in_window / len(self._outcomes) if self._outcomes else 0.0

    @property
    def samples(self) -> int:
        return len(self._outcomes)

    def metrics(self) -> PathMetrics:
        ordered = sorted(self._rtts)
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
