"""The link emulation's decisions, packet by packet (no sockets: pure arithmetic)."""

from __future__ import annotations

import pytest

from app.lab.emulate import IP_UDP_OVERHEAD, Link, ProfileState
from app.lab.link import LinkProfile


def drops(link: Link, n: int, spacing: float = 0.001) -> int:
    return sum(link.admit(i * spacing, 100) is None for i in range(n))


def test_delay_and_fifo_order_under_jitter() -> None:
    link = Link(LinkProfile(delay_ms=50, jitter_ms=20), seed=1)
    releases = [link.admit(i * 0.001, 100) for i in range(2000)]
    assert all(r is not None for r in releases)
    times = [r for r in releases if r is not None]
    assert times == sorted(times)  # jitter alone never reorders
    assert min(t - i * 0.001 for i, t in enumerate(times)) >= 0.0


def test_reordering_lets_packets_overtake() -> None:
    link = Link(LinkProfile(delay_ms=50, jitter_ms=20, reorder_pct=30), seed=1)
    times = [link.admit(i * 0.001, 100) for i in range(2000)]
    assert times != sorted(times)


def test_random_and_bursty_loss_rates() -> None:
    assert drops(Link(LinkProfile(loss_pct=10), seed=2), 50_000) / 50_000 == pytest.approx(
        0.10, abs=0.01)
    bursty = Link(LinkProfile(burst_loss=(1.0, 20.0)), seed=3)
    lost = [bursty.admit(i * 0.001, 100) is None for i in range(100_000)]
    assert sum(lost) / len(lost) == pytest.approx(1 / 21, abs=0.01)
    runs = [n for n in _runs(lost)]
    assert sum(runs) / len(runs) == pytest.approx(100 / 20, rel=0.25)  # mean burst 1/p_bg


def _runs(lost: list[bool]) -> list[int]:
    out, n = [], 0
    for x in lost:
        if x:
            n += 1
        elif n:
            out.append(n)
            n = 0
    return out


def test_rate_limit_spaces_packets_and_a_full_queue_drops() -> None:
    link = Link(LinkProfile(rate_mbit=8, queue_ms=10), seed=4)
    tx = (1000 + IP_UDP_OVERHEAD) * 8 / 8e6
    releases = [link.admit(0.0, 1000) for _ in range(20)]  # a burst at once
    sent = [r for r in releases if r is not None]
    assert len(sent) == int(0.010 / tx)  # what fits in 10 ms of queue
    assert sent[1] - sent[0] == pytest.approx(tx)
    assert link.counters.lost_queue == 20 - len(sent)


def test_down_drops_everything_and_counts_it() -> None:
    link = Link(LinkProfile(down=True), seed=5)
    assert drops(link, 100) == 100 and link.counters.lost_down == 100


def test_overlays_expire_and_operator_changes_win() -> None:
    state = ProfileState(LinkProfile(delay_ms=10))
    state.add(100.0, {"loss_pct": 15.0}, for_s=20.0, ramp=False)
    assert state.effective(110.0).loss_pct == 15
    state.set_now({"loss_pct": 1.0})  # impair: wins over the running episode
    assert state.effective(110.0).loss_pct == 1
    assert state.expire(121.0) and state.effective(121.0).loss_pct == 1


def test_ramps_drift_linearly_and_stay() -> None:
    state = ProfileState(LinkProfile(delay_ms=100))
    state.add(0.0, {"delay_ms": 200.0}, for_s=10.0, ramp=True)
    assert state.effective(5.0).delay_ms == pytest.approx(150)
    state.expire(10.0)
    assert state.effective(50.0).delay_ms == 200 and not state.overlays
