"""stream and transfer report sane figures; the self-test holds its bounds."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.core.errors import BraidError
from app.lab.control import impair, status
from app.lab.selftest import run_selftest
from app.lab.stream import stream
from app.lab.topology import LabInfo
from app.lab.transfer import transfer
from tests.lab.conftest import LabFactory
from tests.util import wait_until


def test_stream_figures_on_a_clean_path(lab: LabInfo) -> None:
    r = stream(lab.name, pps=1000, duration=2.0, size=300, baseline=True, cls="realtime")
    assert (r.sent, r.received, r.loss_pct) == (2000, 2000, 0.0)
    assert r.delay_up is not None and r.delay_down is not None and r.rtt is not None
    assert 15 <= r.delay_up.p50 <= r.delay_up.p95 <= r.delay_up.p99 <= r.delay_up.max
    assert r.rtt.mean == pytest.approx(r.delay_up.mean + r.delay_down.mean, abs=0.5)
    # Loose: the sender is an ordinary process on a shared 2-core host (a gap of 104 ms
    # was seen with four test runs at once); a real outage is told apart below.
    assert r.jitter_ms is not None and r.jitter_ms < 5
    assert r.max_gap_ms is not None and r.max_gap_ms < 250
    # 2 s of 30 fps frames by send time: a 61st when the last packets went out late.
    assert r.frames in (60, 61) and r.stutter_frames == 0


def test_stream_counts_gaps_and_stutter(lab: LabInfo) -> None:
    impair(lab.name, "hk", {"delay_ms": 60.0})
    fine = stream(lab.name, pps=300, duration=1.0, size=200, baseline=True)
    assert fine.received == fine.sent and fine.over_150_pct == 0  # 60 ms each way is fine
    assert fine.stutter_pct < 10
    impair(lab.name, "hk", {"delay_ms": 160.0}, ("up",))
    late = stream(lab.name, pps=300, duration=1.0, size=200, baseline=True)
    # Every frame is later than 150 ms one way (G.114's bound), but smoothly so: the
    # player's jitter buffer plays them in time (loose: a busy host jitters).
    assert late.received == late.sent and late.over_150_pct == 100.0
    assert late.stutter_pct < 10


OUTAGE_S = 0.5


def test_an_outage_is_the_streams_longest_gap(lab: LabInfo) -> None:
    def hk_in() -> int:
        doc = next(p for p in status(lab.name)["paths"] if p["name"] == "hk")
        return int(doc["up"]["counters"]["in_pkts"])

    before = hk_in()
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(stream, lab.name, pps=500, duration=2.5, size=200, baseline=True)
        wait_until(lambda: hk_in() > before + 100, 10, message="the stream never reached hk")
        impair(lab.name, "hk", {"down": True})
        time.sleep(OUTAGE_S)  # how long the outage lasts, not a wait for anything
        impair(lab.name, "hk", {"down": False})
        r = running.result()
    assert 0 < r.sent - r.received < r.sent
    # Both directions go down together: arrivals stop for the outage, which may run
    # late (the host is busy) but never short.
    assert r.max_gap_ms is not None
    assert OUTAGE_S * 1000 - 30 <= r.max_gap_ms <= OUTAGE_S * 1000 + 300, r.max_gap_ms


def test_transfer_reaches_the_rate_limit(lab: LabInfo) -> None:
    impair(lab.name, "hk", {"rate_mbit": 20.0, "queue_ms": 80.0})
    up = transfer(lab.name, size_mb=8, baseline=True)
    down = transfer(lab.name, size_mb=8, flows=2, reverse=True, baseline=True)
    for r in (up, down):
        assert r.completed and r.done_bytes == 8_000_000
        # The limit counts IP bytes of WireGuard packets: TCP payload is ~92 % of them.
        # The cap is what this checks; how close a transfer gets is the machine's (a
        # userspace relay on 2 shared cores: 15.8 of 20 once in a full suite run).
        assert 0.70 * 20 <= r.mbit_s <= 20
    assert down.direction == "down" and len(down.flow_mbit_s) == 2


def test_bad_arguments_are_refused(lab: LabInfo) -> None:
    with pytest.raises(BraidError, match="--pps 0 is out of range"):
        stream(lab.name, pps=0)
    with pytest.raises(BraidError, match="--size 10 is out of range"):
        stream(lab.name, size=10)
    with pytest.raises(BraidError, match="unknown class 'vip'"):
        stream(lab.name, cls="vip")
    with pytest.raises(BraidError, match="--flows 0 is out of range"):
        transfer(lab.name, flows=0)
    with pytest.raises(BraidError, match="is not up"):
        stream("tnone")


def test_stream_needs_a_baseline_to_use_it(lab_factory: LabFactory) -> None:
    info = lab_factory("clean")
    with pytest.raises(BraidError, match="has no baseline tunnel"):
        stream(info.name, baseline=True)


def test_selftest_holds_its_bounds() -> None:
    report = run_selftest()
    print(report.text())
    # When an outage starts is a timing figure, and the machine's noise reaches it (a
    # timeline outage 8 ms late on both links once, in a full suite run on a quiet
    # machine): `braid lab selftest` reports it against its 5 ms, this test only
    # catches a timeline that is broken (20 ms). Everything else holds its bound here.
    timing = {"outage start vs asked", "timeline outage start vs due",
              "backbone timeline outage vs due"}
    assert all(c.passed for c in report.checks if c.what not in timing), report.text()
    for what in timing:
        path = "out" if what == "outage start vs asked" else "tln"
        assert abs(report.check(path, what).measured) <= 20.0, report.text()
    # The bounds the issue sets, checked here too in case anyone loosens the report's.
    delay = report.check("dly", "one-way delay up, mean")
    assert abs(delay.measured - delay.configured) <= 2.0
    loss = report.check("los", "random loss")
    assert abs(loss.measured - loss.configured) <= 1.0
    rate = report.check("rat", "rate")
    assert abs(rate.measured - rate.configured) <= 0.05 * rate.configured
