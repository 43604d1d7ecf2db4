"""Early warning: a cheap change detector per path that says when it starts degrading.

Two-sided CUSUM on the RTT and a Bernoulli CUSUM on probe loss, each against an EWMA
baseline of the path's own history. Pure logic fed by the tracker (liveness.py) with
explicit times, O(1) per probe.

RTT (two-sided, time-weighted so that a path probed every 10 ms and one probed every
200 ms mean the same): with baseline ``mu`` (EWMA, time constant 60 s), its mean
absolute deviation ``dev`` and an allowance ``k = max(5 ms, 10 % of mu, 1.5 * dev)``,
each sample ``x`` weighing ``dt`` (the time since the previous sample, at most 0.5 s):

    S+ = max(0, S+ + (x - mu - k) * dt)     degrading when S+ >= h = 2 s * k
    S- = max(0, S- + (mu - k - x) * dt)     improving when S- >= h

So a rise of ``2k`` is reported after 2 s, of ``3k`` after 1 s, and noise (zero mean,
less than k) never accumulates; ``degrading`` clears when S+ is back to 0.

Loss: with baseline ``p0`` (EWMA over 120 s, at least 0.5 %) and the change worth
reporting ``p1 = max(2 * p0, p0 + 2 %)``, each probe's fate adds its log-likelihood
ratio, ``log(p1 / p0)`` when lost and ``log((1 - p1) / (1 - p0))`` when answered, to
``S`` (floored at 0); degrading when ``S >= 15``, which random loss at the baseline
reaches about once in 10^6 probes (hours at 100 probes a second), while an episode of
28 % reaches it in about 35 probes (0.35 s on a carried path).

Jitter: the same one-sided CUSUM on how far each sample is above the last second's mean
RTT, against its own 60 s baseline ``j0``, with allowance ``max(3 ms, j0)`` and threshold
1.5 s times that, each sample counted at most 8 allowances over (so a 100 ms stall of
the machine, which delays every path's samples at once, adds about a third of the
threshold, where unclipped it passed it on every path together; a real episode, 4 to
21 ms, still warns within a second): it warns when the path's delay spread more than
doubles for a second or two (cn-us's congestion episodes raise the jitter from 3-5 ms
to 8-25 ms each way well before their loss moves the score).
``degrading`` clears when every side is back to 0.

Nothing is decided here: ``degrading`` and its reason are inputs for the deciders (a
shorter dwell before leaving, decide.py) and for realtime copies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class DetectConfig:
    baseline_s: float = 60.0  # EWMA time constant of the RTT baseline
    loss_baseline_s: float = 120.0
    warmup_s: float = 10.0  # no warning before the baseline has this much history
    recent_s: float = 1.0  # the "now" figure in the reason
    k_min_ms: float = 5.0
    k_rel: float = 0.10
    k_dev: float = 1.5
    h_s: float = 2.0  # threshold as k times this many seconds
    max_dt_s: float = 0.5
    p0_min: float = 0.005
    p_step: float = 0.02
    loss_h: float = 15.0
    jit_k_min_ms: float = 3.0
    jit_h_s: float = 1.5
    jit_clip: float = 8.0  # a sample's spread counts at most this many allowances


def _alpha(dt: float, tau: float) -> float:
    """The EWMA weight of a sample ``dt`` after the last: ``1 - exp(-dt / tau)``, which
    is ``dt / tau`` to within 1 % for the steps seen here (dt <= 0.5 s, tau >= 1 s ...
    and cheaper, as it runs for every probe)."""
    return min(1.0, dt / tau) if tau > 0 else 1.0


class ChangeDetector:
    """RTT and loss CUSUMs of one path."""

    def __init__(self, cfg: DetectConfig | None = None) -> None:
        self.cfg = cfg or DetectConfig()
        self._t0: float | None = None
        self._last_rtt_t: float | None = None
        self.mu_ms: float | None = None
        self.dev_ms = 0.0
        self.recent_ms: float | None = None
        self.s_up = 0.0
        self.s_down = 0.0
        self._last_fate_t: float | None = None
        self.p0 = 0.0
        self.recent_loss = 0.0
        self.s_loss = 0.0
        self.jit0_ms: float | None = None
        self.recent_jit_ms = 0.0
        self.s_jit = 0.0
        self.alarms: set[str] = set()  # the sides warning now: "rtt", "jit", "loss"
        self.since: float | None = None

    # -- inputs -------------------------------------------------------------------

    def rtt(self, t: float, rtt_ms: float) -> None:
        c = self.cfg
        if self._t0 is None:
            self._t0 = t
        if self.mu_ms is None or self._last_rtt_t is None:
            self.mu_ms = self.recent_ms = rtt_ms
            self._last_rtt_t = t
            return
        dt = min(c.max_dt_s, max(0.0, t - self._last_rtt_t))
        self._last_rtt_t = t
        k = self.allowance_ms()
        self.s_up = max(0.0, self.s_up + (rtt_ms - self.mu_ms - k) * dt)
        self.s_down = max(0.0, self.s_down + (self.mu_ms - k - rtt_ms) * dt)
        a = _alpha(dt, c.baseline_s)
        self.mu_ms += a * (rtt_ms - self.mu_ms)
        self.dev_ms += a * (abs(rtt_ms - self.mu_ms) - self.dev_ms)
        assert self.recent_ms is not None
        # Above the last second's mean only: a path getting faster is not degrading.
        spread = max(0.0, rtt_ms - self.recent_ms)
        self.recent_ms += _alpha(dt, c.recent_s) * (rtt_ms - self.recent_ms)
        if self.jit0_ms is None:
            self.jit0_ms = spread
        kj = max(c.jit_k_min_ms, self.jit0_ms)
        # A sample counts at most 8 allowances over: a stall of the machine itself (every
        # path's samples late together for 100 ms) must not read as a path's spread.
        counted = min(spread, self.jit0_ms + c.jit_clip * kj)
        self.s_jit = max(0.0, self.s_jit + (counted - self.jit0_ms - kj) * dt)
        self.jit0_ms += a * (spread - self.jit0_ms)
        self.recent_jit_ms += _alpha(dt, c.recent_s) * (spread - self.recent_jit_ms)
        if self.warm(t):
            if self.s_up >= k * c.h_s:
                self._alarm(t, "rtt")
            elif self.s_up == 0.0:
                self._clear("rtt")
            if self.s_jit >= kj * c.jit_h_s:
                self._alarm(t, "jit")
            elif self.s_jit == 0.0:
                self._clear("jit")

    def fate(self, t: float, lost: bool) -> None:
        c = self.cfg
        if self._t0 is None:
            self._t0 = t
        dt = 0.0 if self._last_fate_t is None else min(c.max_dt_s, max(0.0, t - self._last_fate_t))
        self._last_fate_t = t
        p0 = max(c.p0_min, self.p0)
        p1 = min(0.99, max(2 * p0, p0 + c.p_step))
        llr = math.log(p1 / p0) if lost else math.log((1 - p1) / (1 - p0))
        self.s_loss = max(0.0, self.s_loss + llr)
        x = 1.0 if lost else 0.0
        self.p0 += _alpha(max(dt, 1e-3), c.loss_baseline_s) * (x - self.p0)
        self.recent_loss += _alpha(max(dt, 1e-3), 2 * c.recent_s) * (x - self.recent_loss)
        if self.warm(t):
            if self.s_loss >= c.loss_h:
                self._alarm(t, "loss")
            elif self.s_loss == 0.0:
                self._clear("loss")

    def taken_back(self, t: float) -> None:
        """A probe counted lost was answered late after all: undo its evidence."""
        c = self.cfg
        p0 = max(c.p0_min, self.p0)
        p1 = min(0.99, max(2 * p0, p0 + c.p_step))
        self.s_loss = max(0.0, self.s_loss - math.log(p1 / p0)
                          + math.log((1 - p1) / (1 - p0)))

    # -- outputs ------------------------------------------------------------------

    def warm(self, t: float) -> bool:
        return self._t0 is not None and t - self._t0 >= self.cfg.warmup_s

    def allowance_ms(self) -> float:
        c = self.cfg
        return max(c.k_min_ms, c.k_rel * (self.mu_ms or 0.0), c.k_dev * self.dev_ms)

    @property
    def degrading(self) -> bool:
        return bool(self.alarms)

    @property
    def improving(self) -> bool:
        return self.mu_ms is not None and self.s_down >= self.allowance_ms() * self.cfg.h_s

    @property
    def reason(self) -> str | None:
        parts = []
        if "rtt" in self.alarms and self.mu_ms is not None and self.recent_ms is not None:
            parts.append(f"RTT {self.recent_ms:.0f} ms, {self.recent_ms - self.mu_ms:+.0f} ms "
                         f"over its {self.mu_ms:.0f} ms baseline")
        if "jit" in self.alarms and self.jit0_ms is not None:
            parts.append(f"jitter {self.recent_jit_ms:.0f} ms against {self.jit0_ms:.0f} ms "
                         "before")
        if "loss" in self.alarms:
            parts.append(f"loss {self.recent_loss * 100:.1f} % against "
                         f"{max(self.cfg.p0_min, self.p0) * 100:.1f} % before")
        return "; ".join(parts) or None

    def _alarm(self, t: float, side: str) -> None:
        if not self.alarms:
            self.since = t
        self.alarms.add(side)

    def _clear(self, side: str) -> None:
        self.alarms.discard(side)
        if not self.alarms:
            self.since = None
