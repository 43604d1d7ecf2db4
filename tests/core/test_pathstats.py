"""PathStats: RFC 6298 smoothing, RFC 3550 jitter, percentiles and the loss window."""

from __future__ import annotations

import pytest

from app.core.pathstats import PathStats, percentile


def test_empty_stats_have_no_rtt_and_no_loss() -> None:
    m = PathStats().metrics()
    assert m.rtt_ms is None and m.rtt_smoothed_ms is None and m.rtt_p50_ms is None
    assert m.jitter_ms is None and m.loss == 0.0 and m.samples == 0


def test_smoothed_rtt_follows_rfc6298() -> None:
    s = PathStats()
    s.add_reply(100.0)
    assert s.srtt_ms == 100.0 and s.rttvar_ms == 50.0
    s.add_reply(200.0)
    # rttvar = 3/4 * 50 + 1/4 * |100 - 200|; srtt = 7/8 * 100 + 1/8 * 200
    assert s.rttvar_ms == pytest.approx(62.5)
    assert s.srtt_ms == pytest.approx(112.5)


def test_jitter_is_rfc3550_on_rtt_differences() -> None:
    s = PathStats()
    for rtt in (100.0, 116.0, 100.0):
        s.add_reply(rtt)
    # J1 = 16/16 = 1; J2 = 1 + (16 - 1)/16
    assert s.jitter_ms == pytest.approx(1 + 15 / 16)


def test_constant_rtt_has_zero_jitter() -> None:
    s = PathStats()
    for _ in range(50):
        s.add_reply(30.0)
    assert s.jitter_ms == 0.0


def test_percentiles_over_the_window() -> None:
    s = PathStats(rtt_window=100)
    for rtt in range(1, 101):
        s.add_reply(float(rtt))
    m = s.metrics()
    assert m.rtt_p50_ms == pytest.approx(50.5)
    assert m.rtt_p95_ms == pytest.approx(95.05)
    assert m.rtt_ms == 100.0


def test_rtt_window_forgets_old_samples() -> None:
    s = PathStats(rtt_window=10)
    for _ in range(10):
        s.add_reply(500.0)
    for _ in range(10):
        s.add_reply(10.0)
    assert s.metrics().rtt_p95_ms == 10.0


def test_loss_is_a_sliding_window() -> None:
    s = PathStats(loss_window=10)
    for _ in range(8):
        s.add_reply(10.0)
    s.add_loss()
    s.add_loss()
    assert s.loss == pytest.approx(0.2)
    for _ in range(10):
        s.add_reply(10.0)
    assert s.loss == 0.0
    for _ in range(10):
        s.add_loss()
    assert s.loss == 1.0 and s.samples == 10


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError):
        PathStats().add_reply(-1.0)
    with pytest.raises(ValueError):
        PathStats(loss_window=0)
    with pytest.raises(ValueError):
        percentile([], 0.5)


def test_windows_are_time_spans_with_a_floor_in_samples() -> None:
    """At 10 ms probes the loss window holds the last 10 s (1000 probes), not 200; at
    200 ms probes it holds 200 probes (40 s), so a standby's loss is not 3 samples."""
    fast = PathStats()
    for i in range(3000):
        fast.add_reply(30.0, i * 0.01)
    assert fast.samples == pytest.approx(1000, abs=2)
    slow = PathStats()
    for i in range(300):
        slow.add_reply(30.0, i * 0.2)
    assert slow.samples == 200


def test_recent_lateness_and_base_rtt() -> None:
    s = PathStats()
    for i in range(100):
        s.add_reply(30.0, i * 0.01)
    assert s.late_ms() == 0.0 and s.base_rtt_ms() == 30.0
    s.add_reply(90.0, 1.0)  # 60 ms later than the smoothed 30 ms
    assert s.late_ms() == pytest.approx(60.0)
    for i in range(1200):  # 12 s later the spike is forgotten, the base still 30
        s.add_reply(40.0, 1.0 + i * 0.01)
    assert s.late_ms() < 11 and s.base_rtt_ms() == 30.0
    for i in range(13000):  # 2 minutes later the base is the new delay
        s.add_reply(40.0, 13.0 + i * 0.01)
    assert s.base_rtt_ms() == 40.0
