"""Stutter as a call's player sees it (app/lab/stream.py, JitterBuffer): pure, arrival
times given; no lab."""

from __future__ import annotations

import random

import pytest

from app.lab.stream import FRAME_S, JitterBuffer, frame_figures, playout, summarise

PPS = 100


def times(seconds: float, pps: int = PPS) -> list[float]:
    return [1000.0 + i / pps for i in range(round(seconds * pps))]


def test_a_smooth_long_path_plays_in_time_but_is_over_150_ms() -> None:
    sent = times(10)
    rnd = random.Random(1)
    arrived: list[float | None] = [t + 0.300 + rnd.uniform(0, 0.004) for t in sent]
    p = playout(sent, arrived)
    assert not any(p.late)
    # The start buffer first, then the minimum over the stream's own 300 ms.
    assert all(d is not None and 300 <= d <= 385 for d in p.delay_ms)
    assert all(d is not None and 300 <= d <= 330 for d in p.delay_ms[300:])
    # Both ways 300 ms, answered at once: a full stream as summarise() sees it.
    got = {i: (a + 0.300, a, i + 1) for i, a in enumerate(arrived) if a is not None}
    r = summarise(sent, got, pps=PPS, size=200, duration=10, cls=None, node="client")
    assert r.stutter_pct == 0.0
    assert r.over_150_pct == 100.0
    assert r.playout_up_ms is not None and 300 <= r.playout_up_ms <= 345


def test_a_lost_packet_stutters_its_frame_only() -> None:
    sent = times(4)
    arrived: list[float | None] = [t + 0.050 for t in sent]
    arrived[100] = None
    p = playout(sent, arrived)
    assert [i for i, late in enumerate(p.late) if late] == [100]
    got = {i: (a + 0.050, a, i + 1) for i, a in enumerate(arrived) if a is not None}
    ff = frame_figures(sent, got)
    assert ff.stutter == 1 and ff.over_150 == 0
    assert ff.frames == round(4 / FRAME_S)


def test_a_sudden_spike_is_late_and_the_buffer_then_grows_to_absorb_them() -> None:
    sent = times(6)
    # 50 ms flat; from 3 s on every tenth packet takes 90 ms more (a jittery path).
    arrived: list[float | None] = [
        t + 0.050 + (0.090 if i >= 300 and i % 10 == 0 else 0.0) for i, t in enumerate(sent)]
    p = playout(sent, arrived)
    first = [i for i in range(300, 600) if i % 10 == 0 and p.late[i]]
    assert first and first[0] == 300  # the first ones surprise the player
    # Once a tenth of the window is late, the 95th percentile is the spike: none late.
    assert not any(p.late[450:])
    tail = p.delay_ms[-1]
    assert tail is not None and 135 <= tail <= 145


def test_the_buffer_is_bounded() -> None:
    sent = times(4)
    # Half the packets take 2 s more: the buffer stops at its maximum and they are late.
    arrived: list[float | None] = [t + 0.020 + (2.0 if i % 2 else 0.0)
                                   for i, t in enumerate(sent)]
    buf = JitterBuffer(max_buffer_ms=300.0)
    p = playout(sent, arrived, buffer=buf)
    assert all(d is not None and d <= 20 + 300 for d in p.delay_ms)
    assert all(p.late[i] for i in range(1, len(sent), 2))
    # At least its start buffer at first and its minimum later, with no jitter at all.
    flat = playout(sent, [t + 0.020 for t in sent])
    start, least = JitterBuffer().start_buffer_ms, JitterBuffer().min_buffer_ms
    assert flat.delay_ms[0] == pytest.approx(20.0 + start)
    assert all(d == pytest.approx(20.0 + least) for d in flat.delay_ms[250:])


def test_the_player_keeps_its_delay_through_an_outage_and_knows_only_what_arrived() -> None:
    sent = times(5)
    # Nothing arrives from 2 s to 3 s; before and after, 40 ms.
    arrived: list[float | None] = [None if 200 <= i < 300 else t + 0.040
                                   for i, t in enumerate(sent)]
    p = playout(sent, arrived)
    assert all(p.late[200:300])
    assert not any(p.late[:200]) and not any(p.late[300:])
    # 40 ms + the start buffer for the first 2 s, then + the minimum: kept through it.
    assert all(d == pytest.approx(60.0) for d in p.delay_ms[220:])
    # No packet at all: every one is lost, no delay was ever chosen.
    none = playout(sent[:5], [None] * 5)
    assert none.late == (True,) * 5 and none.delay_ms == (None,) * 5


def test_downstream_late_answers_stutter_too() -> None:
    sent = times(3)
    # Up: 30 ms flat. Down: 30 ms, and one answer in 2 s 400 ms more.
    got = {i: (t + 0.060 + (0.400 if i == 250 else 0.0), t + 0.030, i + 1)
           for i, t in enumerate(sent)}
    ff = frame_figures(sent, got)
    assert ff.stutter == 1 and ff.over_150 == 1
    assert ff.playout_up_ms is not None and 50 <= ff.playout_up_ms <= 110
