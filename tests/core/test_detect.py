"""The change detector: RTT and loss CUSUMs against the path's own baseline."""

from __future__ import annotations

import random

import pytest

from app.core.decide import Candidate, ClassDecider, DecideConfig
from app.core.detect import ChangeDetector
from app.core.liveness import Health


def feed(d: ChangeDetector, start: float, end: float, interval: float, rtt: float,
         jitter: float = 0.0, loss: float = 0.0, rng: random.Random | None = None) -> float | None:
    """Probe outcomes every ``interval``; the first time ``degrading`` is seen, if any."""
    rng = rng or random.Random(1)
    t, first = start, None
    while t < end:
        lost = rng.random() < loss
        d.fate(t, lost)
        if not lost:
            d.rtt(t, max(0.0, rng.gauss(rtt, jitter)))
        if first is None and d.degrading:
            first = t
        t += interval
    return first


def test_a_steady_noisy_path_never_warns() -> None:
    """cn-us's tyo: 150 ms, 3 ms jitter each way, 0.6 % round-trip loss, 10 minutes of
    10 ms probes (60 000 outcomes): no warning."""
    d = ChangeDetector()
    assert feed(d, 0, 600, 0.01, 150, jitter=4.2, loss=0.006) is None
    assert not d.degrading and d.reason is None


def test_an_rtt_rise_warns_in_seconds_and_clears_when_it_is_gone() -> None:
    d = ChangeDetector()
    feed(d, 0, 30, 0.01, 100, jitter=2)
    k = d.allowance_ms()
    assert k == pytest.approx(10.0, abs=0.5)  # 10 % of the 100 ms baseline
    first = feed(d, 30, 40, 0.01, 100 + 3 * k, jitter=2)
    # The step itself lifts samples over the last second's mean (the jitter side, at
    # once); the RTT side holds it: 3k is h / 2k = 1 s.
    assert first is not None and 30 < first < 32
    assert "rtt" in d.alarms and d.reason is not None and "ms baseline" in d.reason
    feed(d, 40, 60, 0.01, 100, jitter=2)
    assert not d.degrading


def test_the_rate_does_not_change_what_warns() -> None:
    """Time-weighted: a standby probed every 200 ms warns about as soon as a carried
    path probed every 10 ms."""
    fast, slow = ChangeDetector(), ChangeDetector()
    feed(fast, 0, 30, 0.01, 100)
    feed(slow, 0, 30, 0.2, 100)
    t_fast = feed(fast, 30, 40, 0.01, 140)
    t_slow = feed(slow, 30, 40, 0.2, 140)
    assert t_fast is not None and t_slow is not None and abs(t_fast - t_slow) < 0.5


def test_a_loss_episode_warns_within_a_second_on_a_carried_path() -> None:
    d = ChangeDetector()
    feed(d, 0, 30, 0.01, 150, loss=0.006)
    first = feed(d, 30, 35, 0.01, 150, loss=0.28, rng=random.Random(5))
    assert first is not None and first - 30 < 1.0
    assert d.reason is not None and d.reason.startswith("loss")


def test_a_jitter_episode_warns_in_about_a_second() -> None:
    """cn-us's congestion episodes: jitter from 3 to 15 ms each way, the loss still low."""
    d = ChangeDetector()
    feed(d, 0, 60, 0.01, 150, jitter=4.2)
    first = feed(d, 60, 70, 0.01, 150, jitter=21.0, rng=random.Random(3))
    assert first is not None and first - 60 < 2.0
    assert d.reason is not None and "jitter" in d.reason
    feed(d, 70, 90, 0.01, 150, jitter=4.2)
    assert not d.degrading


def test_a_late_answer_takes_its_loss_back() -> None:
    d = ChangeDetector()
    feed(d, 0, 10, 0.01, 50)
    d.fate(10.0, True)
    before = d.s_loss
    d.taken_back(10.0)
    assert before > 0 and d.s_loss == 0.0


def test_improvement_is_the_other_side() -> None:
    d = ChangeDetector()
    feed(d, 0, 30, 0.01, 200)
    feed(d, 30, 35, 0.01, 120)
    assert d.improving and not d.degrading


def test_a_degrading_current_path_is_left_after_the_short_dwell() -> None:
    """What the warning triggers in the deciders: a challenger better by the margin
    moves a class off a degrading path after degrading_dwell_s (1 s), not dwell_s (5 s)."""
    cfg = DecideConfig(margin=0.1, dwell_s=5.0, hold_down_s=15.0, warmup_s=2.0)

    def cands(degrading: bool) -> list[Candidate]:
        return [Candidate("cur", Health.UP, 0.6, 0.6, -100.0, {}, 100, degrading=degrading),
                Candidate("alt", Health.UP, 0.8, 0.8, -100.0, {}, 100)]

    for degrading, moved_after in ((True, cfg.degrading_dwell_s), (False, cfg.dwell_s)):
        d = ClassDecider("default", cfg, started=-100.0)
        d.step(-50.0, [Candidate("cur", Health.UP, 0.9, 0.9, -100.0, {}, 100)])
        t = 0.0
        while (decision := d.step(t, cands(degrading))) is None:
            t += 0.1
        assert decision.to_path == "alt"
        assert t == pytest.approx(moved_after, abs=0.11)


def test_a_stall_of_the_machine_is_no_jitter_episode() -> None:
    """A 100 ms stall delays every path's samples at once (10 ms probes: 100, 90, ... ms
    late): repeated every few seconds, it never warns."""
    d = ChangeDetector()
    feed(d, 0, 60, 0.01, 150, jitter=1.0)
    t = 60.0
    for _ in range(5):
        for i in range(10):
            d.rtt(t, 250 - 10 * i)
            t += 0.01
        assert feed(d, t, t + 2, 0.01, 150, jitter=1.0) is None and not d.degrading
        t += 2


def test_a_long_episode_clears_within_seconds_of_its_end() -> None:
    """Each sum is held at its threshold: twenty seconds of 15 % loss and 20 ms jitter
    bank no more evidence than one, so the warning ends soon after the episode (it
    stayed on for seven minutes after cn-us's tyo episode when the sums were unbounded)."""
    d = ChangeDetector()
    feed(d, 0, 60, 0.01, 150, jitter=4.2, loss=0.006)
    assert feed(d, 60, 80, 0.01, 150, jitter=20.0, loss=0.15, rng=random.Random(2)) is not None
    t = 80.0
    while d.degrading and t < 140:
        feed(d, t, t + 0.5, 0.01, 150, jitter=4.2, loss=0.006, rng=random.Random(int(t)))
        t += 0.5
    assert not d.degrading and t - 80 < 10


def test_jitter_warns_alike_on_a_standby_and_a_carried_path() -> None:
    """The jitter side takes samples at least 100 ms apart: a standby (200 ms probes) and
    a carried path (10 ms) see a tripled spread within a couple of seconds of each other,
    and neither warns on its steady noise."""
    firsts = []
    for interval in (0.01, 0.2):
        d = ChangeDetector()
        assert feed(d, 0, 120, interval, 150, jitter=4.0, rng=random.Random(4)) is None
        firsts.append(feed(d, 120, 140, interval, 150, jitter=12.0, rng=random.Random(6)))
        assert d.reason is not None and "jitter" in d.reason
    assert all(f is not None and f - 120 < 4.0 for f in firsts)
