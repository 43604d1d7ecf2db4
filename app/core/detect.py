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

Jitter: a CUSUM on the variance of the RTT, which a congestion episode raises long
before its loss moves the score (cn-us's raise the jitter from 2.5-4 ms to 8-25 ms
each way). Its samples are RTTs at least ``jit_gap_s`` (100 ms) apart, so that a carried
path (10 ms probes, whose neighbours share a queue) and a standby (200 ms) say the same;
each step ``d`` between two of them is weighed against the path's own baseline ``v0``
(EWMA of d^2 over 60 s, at least (3 ms)^2) by the log-likelihood ratio of a normal whose
variance is ``jit_ratio`` (6) times the baseline's:

    z = min(d^2 / v0, jit_clip)
    S = max(0, S - ln(r) / 2 + z (1 - 1 / r) / 2)     degrading when S >= jit_h (12)

Simulated on normal noise: random jitter reaches 12 about once in 10^6 steps (a day of
a carried path's 10 a second; one 10-minute run in 24 of the unit test's saw one); a
doubled spread warns in about 30 steps (3-6 s), a tripled one in 11 (1-2 s). Steps, not
deviations from a running mean: a level shift (a route change, either way) is one large
step, not a second of them, and is the RTT side's business. A step counts at most
``jit_clip`` (9 baseline variances): a stall of the machine, which delays one sample of
every path by 100 ms (two steps, up and down), adds 5.7, short of 12.

Each sum is held at its threshold (the loss side clears ``loss_clear``, 3, under it): it
remembers that the path is degrading, not by how much, so a warning ends within seconds
of its episode. Unbounded, cn-us's 20 s episode of 15 % loss on tyo banked enough to keep
tyo "degrading" for seven minutes after it.
``degrading`` clears when every side has cleared.

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
    loss_clear: float = 3.0  # the loss warning clears this far under loss_h
    jit_gap_s: float = 0.1  # the jitter side's samples are at least this far apart
    jit_floor_ms: float = 3.0  # the baseline step's deviation is at least this
    jit_ratio: float = 6.0  # the variance change worth reporting
    jit_clip: float = 9.0  # a step counts at most this many baseline variances
    jit_h: float = 12.0


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
        self._jit_last: tuple[float, float] | None = None  # (t, RTT) of its last sample
        self.jit_v0: float | None = None  # baseline of d^2 (ms^2), twice the RTT's variance
        self.recent_jit_v = 0.0  # the last second's d^2
        self.s_jit = 0.0
        self._jit_n = 0
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
        # Each sum is held at its threshold: it remembers that the path is degrading, not
        # by how much, so that the warning clears within seconds of the change's end.
        self.s_up = min(k * c.h_s, max(0.0, self.s_up + (rtt_ms - self.mu_ms - k) * dt))
        self.s_down = max(0.0, self.s_down + (self.mu_ms - k - rtt_ms) * dt)
        a = _alpha(dt, c.baseline_s)
        self.mu_ms += a * (rtt_ms - self.mu_ms)
        self.dev_ms += a * (abs(rtt_ms - self.mu_ms) - self.dev_ms)
        assert self.recent_ms is not None
        self.recent_ms += _alpha(dt, c.recent_s) * (rtt_ms - self.recent_ms)
        self._jitter(t, rtt_ms)
        if self.warm(t):
            if self.s_up >= k * c.h_s:
                self._alarm(t, "rtt")
            elif self.s_up == 0.0:
                self._clear("rtt")

    def _jitter(self, t: float, rtt_ms: float) -> None:
        c = self.cfg
        last = self._jit_last
        if last is not None and t - last[0] < c.jit_gap_s:
            return
        self._jit_last = (t, rtt_ms)
        if last is None:
            return
        d2 = (rtt_ms - last[1]) ** 2
        floor = c.jit_floor_ms ** 2
        if self.jit_v0 is None:
            self.jit_v0 = self.recent_jit_v = max(floor, d2)
            return
        v0 = max(floor, self.jit_v0)
        z = min(d2 / v0, c.jit_clip)
        r = c.jit_ratio
        self.s_jit = min(c.jit_h, max(0.0, self.s_jit - math.log(r) / 2 + z * (1 - 1 / r) / 2))
        # Clipped, so that one stall does not lift the baseline for a minute; a plain mean
        # while the EWMA has less history than its time constant, so that the first
        # steps do not stand for the baseline through the warm-up.
        dt = min(c.max_dt_s, t - last[0])
        self._jit_n += 1
        self.jit_v0 += max(_alpha(dt, c.baseline_s), 1 / self._jit_n) * (z * v0 - self.jit_v0)
        self.recent_jit_v += _alpha(dt, c.recent_s) * (z * v0 - self.recent_jit_v)
        if self.warm(t):
            if self.s_jit >= c.jit_h:
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
        self.s_loss = min(c.loss_h, max(0.0, self.s_loss + llr))
        x = 1.0 if lost else 0.0
        self.p0 += _alpha(max(dt, 1e-3), c.loss_baseline_s) * (x - self.p0)
        self.recent_loss += _alpha(max(dt, 1e-3), 2 * c.recent_s) * (x - self.recent_loss)
        if self.warm(t):
            if self.s_loss >= c.loss_h:
                self._alarm(t, "loss")
            elif self.s_loss <= c.loss_h - c.loss_clear:
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
        if "jit" in self.alarms and self.jit_v0 is not None:
            # A step between two samples has twice the variance of one: sqrt(d^2 / 2) is
            # the RTT's own spread.
            parts.append(f"jitter {math.sqrt(self.recent_jit_v / 2):.0f} ms against "
                         f"{math.sqrt(self.jit_v0 / 2):.0f} ms before")
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
