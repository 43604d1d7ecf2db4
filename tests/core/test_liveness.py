"""Liveness: deadlines, suspicion at once, down after K misses, recovery."""

from __future__ import annotations

import pytest

from app.core.liveness import Health, LivenessConfig, ProbeTracker, down_after
from app.core.pathstats import PathStats

CFG = LivenessConfig()


def tracker_up(rtt: float = 0.1, n: int = 20, interval: float = 0.05) -> tuple[ProbeTracker, float]:
    """A tracker with ``n`` answered probes; returns it and the time of the last send."""
    t = ProbeTracker(PathStats())
    now = 0.0
    for seq in range(n):
        t.sent(seq, now)
        t.reply(seq, now + rtt)
        now += interval
    return t, now


def test_first_reply_brings_a_path_up() -> None:
    t = ProbeTracker(PathStats())
    assert t.health is Health.UNKNOWN
    t.sent(1, 0.0)
    rtt, change = t.reply(1, 0.030)
    # Its time includes the wait for the tunnel's first handshake: not an RTT sample.
    assert rtt is None and t.stats.srtt_ms is None
    assert change is not None and change.new is Health.UP and t.up_since == 0.030
    t.sent(2, 0.05)
    rtt, change = t.reply(2, 0.08)
    assert rtt == pytest.approx(30.0) and change is None


def test_a_slow_first_handshake_is_connecting_not_down() -> None:
    """cn-us's 280 ms path answers its first probe after about a second: the probes
    sent before that are neither misses that declare it down nor loss."""
    t = ProbeTracker(PathStats())
    now, seq = 0.0, 0
    while now < 1.3:  # probed every 20 ms while it has not answered
        t.sent(seq, now)
        assert t.check(now) is None and t.health is Health.UNKNOWN
        seq, now = seq + 1, now + 0.02
    _, change = t.reply(seq - 20, now)  # first handshake done: replies arrive
    assert change is not None and change.new is Health.UP
    assert t.outstanding == 0  # the rest queued behind the handshake are forgotten
    for i in range(5):
        t.sent(seq + i, now + i * 0.05)
        t.reply(seq + i, now + i * 0.05 + 0.28)
    assert t.check(now + 5) is None
    assert t.health is Health.UP and t.stats.loss == 0.0
    assert t.stats.srtt_ms == pytest.approx(280.0)


def test_a_missed_probe_is_suspected_at_once_and_an_answer_clears_it() -> None:
    t, now = tracker_up()
    t.sent(100, now)
    deadline = t.next_deadline()
    assert deadline is not None
    # srtt 100 ms + max(20 ms, 4 * rttvar): rttvar decays towards 0 on a steady path.
    assert deadline == pytest.approx(now + 0.1 + 0.02, abs=0.01)
    assert t.check(deadline - 0.001) is None
    change = t.check(deadline)
    assert change is not None and change.new is Health.SUSPECT
    t.sent(101, now + 0.05)
    _, change = t.reply(101, now + 0.15)
    assert change is not None and change.new is Health.UP


def test_down_after_three_misses_with_detection_time() -> None:
    t, now = tracker_up(rtt=0.1)
    last_reply = t.last_reply
    for i in range(3):
        t.sent(200 + i, now + i * 0.05)
    changes = [t.check(now + i * 0.05 + 0.13) for i in range(3)]
    assert [c.new if c else None for c in changes] == [Health.SUSPECT, None, Health.DOWN]
    down = changes[2]
    assert down is not None and down.detection_s is not None and last_reply is not None
    assert down.detection_s == pytest.approx(now + 0.1 + 0.13 - last_reply)


def test_down_path_needs_several_answers_to_come_back() -> None:
    t, now = tracker_up()
    for i in range(3):
        t.sent(300 + i, now)
    t.check(now + 2.0)
    assert t.health is Health.DOWN
    changes = []
    for i in range(CFG.recover_after):
        t.sent(400 + i, now + 3 + i)
        changes.append(t.reply(400 + i, now + 3 + i + 0.1)[1])
    assert changes[:-1] == [None] * (CFG.recover_after - 1)
    assert changes[-1] is not None and changes[-1].new is Health.UP
    assert t.up_since == pytest.approx(now + 3 + CFG.recover_after - 1 + 0.1)


def test_a_path_that_never_answers_goes_down_after_the_connect_timeout() -> None:
    t = ProbeTracker(PathStats())
    now, seq, changes = 0.0, 0, []
    while now < CFG.connect_timeout_s + 1.05:
        t.sent(seq, now)
        change = t.check(now)
        if change is not None:
            changes.append(change)
        seq, now = seq + 1, now + 0.02
    assert len(changes) == 1
    down = changes[0]
    assert down.new is Health.DOWN and down.detection_s is None
    assert CFG.connect_timeout_s <= down.t < CFG.connect_timeout_s + 0.05
    assert t.stats.loss == 0.0  # it never answered: an outage, not a loss rate


def test_late_reply_counts_as_answer_but_not_after_the_hard_timeout() -> None:
    t, now = tracker_up(rtt=0.1)
    t.sent(500, now)
    t.check(now + 0.5)  # missed
    rtt, _ = t.reply(500, now + 0.6)
    assert rtt == pytest.approx(600.0)
    assert t.stats.loss == 0.0
    t.sent(501, now)
    t.check(now + 5.0)  # past the hard timeout: lost
    assert t.reply(501, now + 5.1) == (None, None)
    assert t.stats.loss > 0


def test_k_grows_with_loss_so_random_loss_rarely_looks_like_an_outage() -> None:
    assert down_after(0.0, CFG) == 3
    assert down_after(0.01, CFG) == 3
    assert down_after(0.08, CFG) == 4
    assert down_after(0.3, CFG) == 8
    assert 0.08 ** down_after(0.08, CFG) < CFG.false_alarm_rate


def test_an_outage_is_down_not_loss() -> None:
    t, now = tracker_up(rtt=0.1)
    for i in range(20):
        t.sent(600 + i, now + i * 0.05)
    t.check(now + 10.0)
    assert t.health is Health.DOWN
    # Probes sent during the outage and expiring after the path is back: not loss.
    for i in range(5):
        t.sent(700 + i, now + 11)
    for i in range(CFG.recover_after):
        t.sent(800 + i, now + 11.5)
        t.reply(800 + i, now + 11.6)
    assert t.health is Health.UP
    t.check(now + 20)
    assert t.stats.loss == 0.0


def test_recent_loss_counts_misses_at_once_and_takes_back_late_answers() -> None:
    t, now = tracker_up(rtt=0.1, n=40)
    assert t.recent_lost == 0
    # Two probes missed (no reply by srtt + margin): lost now, not a second later.
    t.sent(500, now)
    t.sent(501, now + 0.05)
    t.check(now + 0.05 + 0.13)
    assert t.recent_lost == 2 and t.stats.loss == 0.0
    # One of them answers late after all (a delay spike): it was not lost.
    t.reply(500, now + 0.2)
    assert t.recent_lost == 1
    # The window forgets: 40 answered probes later nothing recent is lost.
    for i in range(40):
        t.sent(600 + i, now + 1 + i * 0.05)
        t.reply(600 + i, now + 1 + i * 0.05 + 0.1)
    assert t.recent_lost == 0


def test_probes_while_down_are_not_recent_loss() -> None:
    t, now = tracker_up(rtt=0.1)
    for i in range(3):
        t.sent(700 + i, now + i * 0.05)
        t.check(now + i * 0.05 + 0.13)
    assert t.health is Health.DOWN and t.recent_lost == 3
    for i in range(10):
        t.sent(800 + i, now + 1 + i * 0.2)
        t.check(now + 1 + i * 0.2 + 1.5)
    assert t.recent_lost == 3  # the outage is the DOWN state, not a loss episode


def test_a_local_stall_defers_down_until_another_path_answers() -> None:
    """Every path missing at once is likelier a stall here than paths failing together."""
    t, now = tracker_up(rtt=0.1)
    stalled = [True]
    t.stall_suspected = lambda: stalled[0]
    for i in range(6):  # K = 3 misses and more, while the others miss too
        t.sent(900 + i, now + i * 0.02)
        t.check(now + i * 0.02 + 0.13)
    assert t.health is Health.SUSPECT
    stalled[0] = False  # another path answers again: there is somewhere to go
    t.sent(950, now + 0.2)
    change = t.check(now + 0.2 + 0.13)
    assert change is not None and change.new is Health.DOWN


def test_a_stall_defers_down_for_a_bounded_time_only() -> None:
    t, now = tracker_up(rtt=0.1)
    t.stall_suspected = lambda: True
    changes = []
    for i in range(200):
        t.sent(1000 + i, now + i * 0.02)
        change = t.check(now + i * 0.02 + 0.13)
        if change is not None:
            changes.append(change)
    assert [c.new for c in changes] == [Health.SUSPECT, Health.DOWN]
    third_miss = now + 2 * 0.02 + 0.13
    assert changes[1].t == pytest.approx(third_miss + CFG.stall_max_s, abs=0.021)
