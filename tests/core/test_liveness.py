"""Liveness: suspicion at once, down only on silence (late is not lost), the detection
bound, passive evidence, recovery."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from app.core.liveness import (
    PASSIVE,
    SILENT,
    Health,
    HealthChange,
    LivenessConfig,
    ProbeTracker,
    down_after,
)
from app.core.pathstats import PathStats

CFG = LivenessConfig()


def simulate(t: ProbeTracker, start: float, end: float, interval: float,
             rtt: Callable[[float], float | None], *, seq0: int = 10_000,
             rx: Callable[[float], bool] | None = None, poll: float = 0.01,
             step: float = 0.001) -> list[HealthChange]:
    """Probes every ``interval`` from ``start``; the reply to a probe sent at ``s``
    arrives at ``s + rtt(s)`` (None: lost); ``check`` every ``step``; with ``rx``, the
    tunnel's counter is read every ``poll`` and rose when ``rx(now)``."""
    changes: list[HealthChange] = []
    arrivals: list[tuple[float, int]] = []
    now, next_send, next_poll, last_poll, seq = start, start, start, start, seq0

    def note(c: HealthChange | None) -> None:
        if c is not None:
            changes.append(c)

    while now <= end:
        while next_send <= now + 1e-9:
            t.sent(seq, next_send)
            r = rtt(next_send)
            if r is not None:
                arrivals.append((next_send + r, seq))
            seq, next_send = seq + 1, next_send + interval
        arrivals.sort()
        while arrivals and arrivals[0][0] <= now + 1e-9:
            a, s = arrivals.pop(0)
            note(t.reply(s, a)[1])
        if rx is not None and next_poll <= now + 1e-9:
            note(t.rx_poll(now, last_poll, rx(now)))
            last_poll, next_poll = now, next_poll + poll
        note(t.check(now))
        now += step
    return changes


def delay_step_rtt(step: float) -> Callable[[float], float]:
    """+50 ms each way at ``step`` on a 15 ms path, as the lab's relay does it: each
    direction's packets entering after the step wait 50 ms more."""
    def rtt(s: float) -> float:
        up = 0.015 + (0.050 if s >= step else 0.0)
        down = 0.015 + (0.050 if s + up >= step else 0.0)
        return up + down
    return rtt


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
    # srtt 100 ms + max(20 ms, 4 * rttvar): rttvar decays towards 0 on a steady path.
    deadline = now + 0.1 + t.margin_s()
    assert t.margin_s() == pytest.approx(0.02, abs=0.01)
    first = t.next_deadline()
    assert first is not None and first <= deadline  # (its silence is judged sooner)
    assert t.check(first) is None  # one probe overdue is no silence
    assert t.check(deadline - 0.001) is None
    change = t.check(deadline)
    assert change is not None and change.new is Health.SUSPECT
    t.sent(101, now + 0.05)
    _, change = t.reply(101, now + 0.15)
    assert change is not None and change.new is Health.UP


def test_down_on_silence_within_the_bound() -> None:
    """The path dies at f = 1.0 s, d = 15 ms from the client (RTT 30 ms, probes every
    10 ms): declared down by f + d + I + late_limit, and not before the silence."""
    t = ProbeTracker(PathStats())
    f, d, interval = 1.0, 0.015, 0.010
    changes = simulate(t, 0.0, 1.5, interval,
                       lambda s: 0.030 if s + 0.030 - d < f else None)
    down = [c for c in changes if c.new is Health.DOWN]
    assert len(down) == 1 and t.health is Health.DOWN
    bound = f + d + interval + t.late_limit_s()
    assert down[0].t <= bound + 0.002
    assert down[0].t >= f + d + CFG.late_step_s  # it waited out the allowed delay step
    assert down[0].detection_s is not None
    assert down[0].detection_s == pytest.approx(down[0].t - (f + d), abs=0.011)
    assert t.late_limit_s() == pytest.approx(CFG.late_step_s + CFG.min_margin_s)


def test_a_delay_step_is_late_not_lost() -> None:
    """+50 ms each way at 1.0 s (RTT 30 -> 130 ms, no loss), as the lab's relay does
    it: each direction's packets entering after the step wait 50 ms more. Replies stop
    for about 50 ms twice; the path stays up, its RTT rises."""
    t = ProbeTracker(PathStats())
    step = 1.0

    changes = simulate(t, 0.0, 3.0, 0.010, delay_step_rtt(step))
    assert Health.DOWN not in [c.new for c in changes]
    assert t.health is Health.UP
    assert t.stats.srtt_ms == pytest.approx(130.0, abs=2)


def test_a_dead_path_is_silent_a_delay_step_before_it_is_down() -> None:
    """The path dies at f = 1.0 s, d = 15 ms (probes every 10 ms): silent by f + d + I +
    silent_limit, and down only the delay step (50 ms) and the verdict's higher floor
    after that."""
    t = ProbeTracker(PathStats())
    f, d, interval = 1.0, 0.015, 0.010
    changes = simulate(t, 0.0, 1.5, interval,
                       lambda s: 0.030 if s + 0.030 - d < f else None)
    silent = [c for c in changes if c.why == SILENT]
    down = next(c for c in changes if c.new is Health.DOWN)
    assert len(silent) == 1 and silent[0].new is Health.SUSPECT
    bound = f + d + interval + t.silent_limit_s() + 0.002
    assert f + d + CFG.silent_floor_s <= silent[0].t <= bound
    assert down.t - silent[0].t == pytest.approx(
        CFG.late_step_s + CFG.min_margin_s - CFG.silent_floor_s, abs=0.011)


def test_a_carried_path_that_stops_is_silent_before_its_first_probe_is_missed() -> None:
    """Probes every 10 ms: the silence (10 ms past the due replies, two overdue) comes
    before the first probe's deadline (20 ms past its due reply)."""
    t = ProbeTracker(PathStats())
    f, d, interval = 1.0, 0.015, 0.010
    changes = simulate(t, 0.0, 1.2, interval,
                       lambda s: 0.030 if s + 0.030 - d < f else None)
    first = next(c for c in changes if c.t > 0.5 and c.new is not Health.UP)
    assert first.new is Health.SUSPECT and first.why == SILENT and first.old is Health.UP
    assert first.t <= f + d + interval + CFG.silent_floor_s + 0.002
    assert first.t < f + d + interval + CFG.min_margin_s


def test_a_path_receiving_more_than_its_replies_is_not_silent_however_late_they_are() -> None:
    """A download starts at 1.0 s: the replies queue behind it (RTT 30 -> 130 ms), and
    every counter read sees more than our replies arrive: never silent, never down."""
    t = ProbeTracker(PathStats())
    changes = simulate(t, 0.0, 2.0, 0.010, lambda s: 0.030 if s < 1.0 else 0.130,
                       rx=lambda now: True, poll=0.02)
    assert not [c for c in changes if c.why == SILENT or c.new is Health.DOWN]
    # The same replies with nothing else arriving: silent at the step.
    t = ProbeTracker(PathStats())
    changes = simulate(t, 0.0, 2.0, 0.010, lambda s: 0.030 if s < 1.0 else 0.130)
    assert [c for c in changes if c.why == SILENT]


def test_a_delay_step_is_silent_for_a_moment_then_up_again() -> None:
    """The same +50 ms each way as above: replies stop for 50 ms, so the path is silent
    (a class may route around it) and up again at the next reply, never down."""
    t = ProbeTracker(PathStats())
    step = 1.0

    changes = simulate(t, 0.0, 3.0, 0.010, delay_step_rtt(step))
    assert Health.DOWN not in [c.new for c in changes]
    assert [c.why for c in changes if c.t > step].count(SILENT) >= 1
    assert t.health is Health.UP and not t.silent


def test_random_loss_alone_does_not_make_a_path_silent() -> None:
    """0.3 % loss at 10 ms probes: single losses happen, two in a row (what a quiet of
    10 ms past the due reply takes) about once in 10^5 probes, not in these 6000."""
    rng = random.Random(7)
    t = ProbeTracker(PathStats())
    changes = simulate(t, 0.0, 60.0, 0.010, lambda s: None if rng.random() < 0.003 else 0.030,
                       step=0.002)
    assert not [c for c in changes if c.why == SILENT]
    assert down_after(0.003, CFG, silent=True) == 2
    assert down_after(0.08, CFG, silent=True) == 4


def test_a_stall_of_every_path_is_not_this_path_s_silence() -> None:
    t, now = tracker_up(rtt=0.03, interval=0.01)
    t.stall_suspected = lambda: True
    for i in range(3):
        t.sent(300 + i, now + i * 0.01)
    t.check(now + 0.12)
    assert t.health is Health.SUSPECT and not t.silent


def test_a_reply_late_by_more_than_the_step_plus_margin_is_down() -> None:
    t = ProbeTracker(PathStats())
    changes = simulate(t, 0.0, 2.0, 0.010,
                       lambda s: 0.030 + (0.200 if s >= 1.0 else 0.0))
    assert Health.DOWN in [c.new for c in changes]  # 200 ms of silence: indistinguishable


def test_the_path_s_own_recent_lateness_widens_the_allowance() -> None:
    """A path whose replies were up to 60 ms late in the last 10 s (jitter) may be
    silent that much longer before it is down."""
    t, now = tracker_up(rtt=0.1, n=40, interval=0.01)
    base = t.late_limit_s()
    t.sent(77, now)
    t.reply(77, now + 0.1 + 0.06)
    assert t.late_limit_s() == pytest.approx(base - CFG.min_margin_s + 0.06, abs=0.002)


def test_down_path_needs_several_answers_to_come_back() -> None:
    t, now = tracker_up()
    for i in range(4):
        t.sent(300 + i, now)
    t.check(now + 2.0)  # misses and hard timeouts in one check
    assert t.health is Health.DOWN
    changes = []
    for i in range(CFG.recover_after):
        t.sent(400 + i, now + 3 + i)
        changes.append(t.reply(400 + i, now + 3 + i + 0.1)[1])
    assert changes[:-1] == [None] * (CFG.recover_after - 1)
    assert changes[-1] is not None and changes[-1].new is Health.UP
    assert t.up_since == pytest.approx(now + 3 + CFG.recover_after - 1 + 0.1)


def test_silence_goes_on_when_owed_probes_pass_their_hard_timeout() -> None:
    """Probes forgotten at their hard timeout (1 s) while a stall held the verdict back
    still count: the path has been quiet since the first of them was due."""
    t, now = tracker_up(rtt=0.1)
    stalled = [True]
    t.stall_suspected = lambda: stalled[0]
    for i in range(4):
        t.sent(300 + i, now + i * 0.05)
    t.check(now + 1.5)
    assert t.health is Health.SUSPECT and t.outstanding == 0
    stalled[0] = False
    t.sent(310, now + 1.5)
    change = t.check(now + 1.5 + 0.13)
    assert change is not None and change.new is Health.DOWN


def test_rx_evidence_vetoes_down_and_its_end_lets_it_come() -> None:
    """Replies stop at 1.0 s but the tunnel keeps receiving (a flow's downstream, TCP's
    ACKs of an upload) until 2.0 s: not down until nothing arrives at all."""
    t = ProbeTracker(PathStats())
    changes = simulate(t, 0.0, 2.5, 0.010, lambda s: 0.030 if s < 1.0 else None,
                       rx=lambda now: now < 2.0)
    down = [c for c in changes if c.new is Health.DOWN]
    assert len(down) == 1 and 2.0 + CFG.late_step_s <= down[0].t <= 2.0 + 0.1


def test_rx_is_ignored_when_passive_signals_are_off() -> None:
    t = ProbeTracker(PathStats(), LivenessConfig(passive=False))
    changes = simulate(t, 0.0, 1.5, 0.010, lambda s: 0.030 if s < 1.0 else None,
                       rx=lambda now: True)
    assert Health.DOWN in [c.new for c in changes]


def test_a_carried_path_that_stops_receiving_is_suspected_before_its_probes_say() -> None:
    """Probes every 100 ms, a stream keeping rx rising at every 10 ms read; the path
    dies at 1.0 s: the counters suspect it within two reads, before the next probe's
    deadline (srtt + 20 ms after it was sent)."""
    t = ProbeTracker(PathStats())
    changes = simulate(t, 0.0, 1.3, 0.100, lambda s: 0.030 if s < 0.97 else None,
                       rx=lambda now: now < 1.0)
    suspect = next(c for c in changes if c.new is Health.SUSPECT)
    assert suspect.why == PASSIVE
    assert 1.0 < suspect.t <= 1.0 + 2 * 0.01 + 0.002
    assert suspect.t < 1.0 + 0.030 + CFG.min_margin_s  # probe sent at 1.0: its deadline


def test_rx_again_clears_a_passive_suspicion() -> None:
    t, now = tracker_up(rtt=0.03, interval=0.01)
    last = now
    for i in range(6):
        t.rx_poll(now + i * 0.01, last, True)
        last = now + i * 0.01
    now = last
    assert t.rx_poll(now + 0.01, now, False) is None
    c = t.rx_poll(now + 0.02, now + 0.01, False)
    assert c is not None and c.new is Health.SUSPECT and t.suspect_reason == PASSIVE
    c = t.rx_poll(now + 0.03, now + 0.02, True)
    assert c is not None and c.new is Health.UP


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


def test_an_episode_that_has_just_begun_raises_k_at_once() -> None:
    """28 % round-trip loss from 1.0 s on a path probed every 50 ms (a backup): its long
    window still says 0.3 %, its recent window says otherwise within a second."""
    t = ProbeTracker(PathStats())
    rng = random.Random(7)
    changes = simulate(t, 0.0, 30.0, 0.050,
                       lambda s: 0.15 if s < 1.0 or rng.random() > 0.28 else None)
    assert Health.DOWN not in [c.new for c in changes]


def test_k_grows_with_loss_so_random_loss_rarely_looks_like_an_outage() -> None:
    assert down_after(0.0, CFG) == 4
    assert down_after(0.01, CFG) == 4
    assert down_after(0.03, CFG) == 4
    assert down_after(0.08, CFG) == 6  # cn-us's us
    assert down_after(0.12, CFG) == 7
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
    # The window forgets: 2 s and 40 answered probes later nothing recent is lost.
    for i in range(50):
        t.sent(600 + i, now + 1 + i * 0.05)
        t.reply(600 + i, now + 1 + i * 0.05 + 0.1)
    assert t.recent_lost == 0 and t.recent_size == 41


def test_the_recent_window_is_two_seconds_but_at_least_forty_probes() -> None:
    fast, _ = tracker_up(rtt=0.03, n=1000, interval=0.01)
    assert fast.recent_size == pytest.approx(200, abs=2)  # 2 s of 10 ms probes
    slow, _ = tracker_up(rtt=0.03, n=100, interval=0.2)
    assert slow.recent_size == CFG.recent_min  # 40 probes: 8 s at 200 ms


def test_probes_while_down_are_not_recent_loss() -> None:
    t, now = tracker_up(rtt=0.1)
    for i in range(4):
        t.sent(700 + i, now + i * 0.05)
    t.check(now + 0.4)
    assert t.health is Health.DOWN and t.recent_lost == 4
    for i in range(10):
        t.sent(800 + i, now + 1 + i * 0.2)
        t.check(now + 1 + i * 0.2 + 1.5)
    assert t.recent_lost == 4  # the outage is the DOWN state, not a loss episode


def test_a_local_stall_defers_down_until_another_path_answers() -> None:
    """Every path silent at once is likelier a stall here than paths failing together."""
    t = ProbeTracker(PathStats())
    stalled = [True]
    t.stall_suspected = lambda: stalled[0]
    changes = simulate(t, 0.0, 1.3, 0.010, lambda s: 0.030 if s < 1.0 else None)
    assert [c.new for c in changes if c.t > 1.0] == [Health.SUSPECT]
    stalled[0] = False  # another path answers again: there is somewhere to go
    changes = simulate(t, 1.3, 1.4, 0.010, lambda s: None, seq0=20_000)
    assert changes and changes[0].new is Health.DOWN


def test_a_stall_defers_down_for_a_bounded_time_only() -> None:
    t = ProbeTracker(PathStats())
    t.stall_suspected = lambda: True
    changes = simulate(t, 0.0, 4.0, 0.010, lambda s: 0.030 if s < 1.0 else None)
    after = [c for c in changes if c.t > 1.0]
    assert [c.new for c in after] == [Health.SUSPECT, Health.DOWN]
    due = 1.0 + 0.030 + t.late_limit_s()  # when the silence was long enough
    assert after[1].t == pytest.approx(due + CFG.stall_max_s, abs=0.03)


def test_probes_slowing_down_is_no_silence() -> None:
    """A path probed fast while warming has a counter that rises at every read; once its
    probes slow to the standby rate the counter pauses, which is not the tunnel going
    quiet."""
    from app.core.liveness import LivenessConfig, ProbeTracker
    from app.core.pathstats import PathStats

    cfg = LivenessConfig()
    t = ProbeTracker(PathStats(), cfg)
    t.sent(1, 0.0)
    t.reply(1, 0.03)
    now = 0.1
    for _ in range(cfg.rx_steady_polls + 1):
        t.rx_poll(now + 0.02, now, True)
        now += 0.02
    t.rx_reset()  # the engine slowed its probes
    for _ in range(cfg.rx_quiet_polls + 1):
        assert t.rx_poll(now + 0.02, now, False) is None
        now += 0.02


def test_replies_still_in_flight_after_probes_slow_build_no_run() -> None:
    """On a long path the fast probes' replies keep arriving for a round trip after the
    probes slowed: the counter rises at every read, then pauses. That pause is no
    silence either."""
    from app.core.liveness import LivenessConfig, ProbeTracker
    from app.core.pathstats import PathStats

    cfg = LivenessConfig()
    stats = PathStats()
    for i in range(10):
        stats.add_reply(150.0, i * 0.02)  # a 150 ms round trip
    t = ProbeTracker(stats, cfg)
    t.sent(1, 0.0)
    t.reply(1, 0.15)
    now = 0.2
    for _ in range(cfg.rx_steady_polls + 1):
        t.rx_poll(now + 0.02, now, True)
        now += 0.02
    t.rx_reset(now)  # the engine slowed its probes
    for _ in range(7):  # the replies in flight, one round trip's worth of reads
        assert t.rx_poll(now + 0.02, now, True) is None
        now += 0.02
    for _ in range(cfg.rx_quiet_polls + 1):
        assert t.rx_poll(now + 0.02, now, False) is None
        now += 0.02


def test_a_counter_rising_every_other_read_is_no_stream() -> None:
    """Replies to 50 ms probes, read every 20 ms, rise at two reads of five: with a
    little jitter two reads in a row see nothing, and that is no tunnel going quiet."""
    from app.core.liveness import LivenessConfig, ProbeTracker
    from app.core.pathstats import PathStats

    cfg = LivenessConfig()
    t = ProbeTracker(PathStats(), cfg)
    t.sent(1, 0.0)
    t.reply(1, 0.03)
    now = 0.1
    for rose in [True, False] * 10 + [True, False, False, False]:
        assert t.rx_poll(now + 0.02, now, rose) is None
        now += 0.02


def test_a_path_probed_slower_than_its_silent_limit_is_never_silent() -> None:
    """The backup rate (50 ms: a carried path whose classes send nothing), 0.3 % loss and
    4 ms of jitter: a lost probe followed by a reply a little after its expected time is
    no silence (it made class default evade for nothing about once a minute on cn-us);
    nothing would be saved by evading a path nobody sends on. Down is still declared."""
    rng = random.Random(11)
    t = ProbeTracker(PathStats())
    changes = simulate(t, 0.0, 300.0, 0.050,
                       lambda s: None if rng.random() < 0.003 else 0.150 + rng.gauss(0, 0.004),
                       step=0.002)
    assert not [c for c in changes if c.why == SILENT]
    assert Health.DOWN not in [c.new for c in changes]
    dead = simulate(t, 300.0, 302.0, 0.050, lambda s: None, seq0=40_000, step=0.002)
    assert [c.new for c in dead if c.new is Health.DOWN] == [Health.DOWN]


def _our_replies_only(t: ProbeTracker, end: float, *, stall: tuple[float, float] | None = None,
                      dies: float | None = None, rtt: float = 0.050) -> list[HealthChange]:
    """The engine as probing.py runs it on a busy path whose tunnel receives nothing but
    our replies: every 10 ms it reads the replies (kernel-stamped), sends a probe and
    checks; every 20 ms it reads the rx counter (rose: a reply arrived since the last
    read; never more than our replies). During ``stall`` it does nothing at all (the
    replies wait in the socket); probes sent from ``dies`` on are never answered."""
    changes: list[HealthChange] = []
    arrivals: list[tuple[float, int]] = []
    now, seq, last_poll, rx_since = 0.0, 0, 0.0, False
    while now <= end:
        if stall is None or not stall[0] <= now < stall[1]:
            while arrivals and arrivals[0][0] <= now + 1e-9:
                at, s = arrivals.pop(0)
                changes.append(t.reply(s, at)[1])  # type: ignore[arg-type]
                rx_since = True
            if now - last_poll >= 0.020 - 1e-9:
                changes.append(t.rx_poll(now, last_poll, rx_since, False))  # type: ignore[arg-type]
                last_poll, rx_since = now, False
            t.sent(seq, now)
            if dies is None or now < dies:
                arrivals.append((now + rtt, seq))
            seq += 1
            changes.append(t.check(now))  # type: ignore[arg-type]
        now = round(now + 0.010, 6)
    return [c for c in changes if c is not None]


def test_a_pause_in_our_own_probes_is_no_silence() -> None:
    """The engine's thread stalls for 80 ms (a GC pause, a loaded machine) on a path with
    a 50 ms round trip: one round trip after it stopped sending, our replies pause for
    80 ms too, and that is not the path going quiet (it made class default evade the
    path after every such stall). A real death under the same probes is still suspected
    within two counter reads of its silence."""
    stalled = _our_replies_only(ProbeTracker(PathStats()), 3.0, stall=(2.0, 2.08))
    assert [c.new for c in stalled] == [Health.UP], stalled
    dead = _our_replies_only(ProbeTracker(PathStats()), 3.0, dies=2.0)
    suspect = next(c for c in dead if c.new is Health.SUSPECT)
    # its last reply arrives at 2.04 (the probe sent at 1.99): two reads later, at most
    assert 2.04 < suspect.t <= 2.04 + 2 * 0.020 + 0.010, dead
