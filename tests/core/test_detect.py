"""The change detector: RTT and loss CUSUMs against the path's own baseline."""

from __future__ import annotations

import random

import pytest

from app.core.detect import ChangeDetector


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
    assert first is not None and 30.5 < first < 32  # 3k: h / 2k = 1 s
    assert d.reason is not None and "ms baseline" in d.reason
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
