"""Changing a running lab: what `impair` sets is what a stream then measures."""

from __future__ import annotations

import pytest

from app.core.errors import BraidError
from app.lab.control import impair, status
from app.lab.relay_client import relay_request
from app.lab.stream import stream
from app.lab.topology import LabInfo


def test_impair_changes_what_is_measured(lab: LabInfo) -> None:
    before = stream(lab.name, pps=500, duration=1.0, size=200, baseline=True)
    assert before.loss_pct == 0 and before.delay_up is not None
    assert before.delay_up.p50 == pytest.approx(15, abs=2)

    impair(lab.name, "hk", {"delay_ms": 60.0}, ("up",))
    impair(lab.name, "hk", {"loss_pct": 20.0}, ("down",))
    after = stream(lab.name, pps=1000, duration=2.0, size=200, baseline=True)
    assert after.delay_up is not None and after.delay_down is not None
    assert after.delay_up.p50 == pytest.approx(60, abs=2)
    assert after.delay_down.p50 == pytest.approx(15, abs=2)
    assert after.loss_pct == pytest.approx(20, abs=4)
    assert after.up_loss_pct == pytest.approx(0, abs=1)

    impair(lab.name, "hk", {"down": True})
    assert stream(lab.name, pps=200, duration=0.5, size=200, baseline=True,
                  wait=0.5).received == 0
    impair(lab.name, "hk", {}, reset=True)  # the scenario's profile: 15 ms, no loss, up
    assert status(lab.name)["paths"][0]["down"]["profile"]["loss_pct"] == 0
    again = stream(lab.name, pps=200, duration=1.0, size=200, baseline=True)
    assert again.received == again.sent


def test_status_reports_profiles_and_counters(lab: LabInfo) -> None:
    stream(lab.name, pps=100, duration=0.5, size=200, baseline=True)
    doc = status(lab.name)
    assert [p["name"] for p in doc["paths"]] == ["hk", "tyo", "sgp"]
    hk = doc["paths"][0]
    assert hk["gateway_wireguard"] and hk["flows"] >= 1
    assert hk["up"]["profile"]["delay_ms"] == 15 and hk["up"]["counters"]["out_pkts"] >= 50
    assert doc["nodes"]["wan"]["processes"] == 2  # the relay and the ISP's resolver


@pytest.mark.parametrize(("path", "changes", "says"), [
    ("xx", {"delay_ms": 1.0}, "no path 'xx'"),
    ("hk", {"loss_pct": 101.0}, "loss_pct = 101.0 is out of range"),
    ("hk", {"colour": 1}, "unknown link setting 'colour'"),
    ("hk", {}, "nothing to change"),
])
def test_bad_impairments_are_refused_and_change_nothing(lab: LabInfo, path: str,
                                                        changes: dict[str, object],
                                                        says: str) -> None:
    before = status(lab.name)["paths"]
    with pytest.raises(BraidError, match=says):
        impair(lab.name, path, changes)
    after = status(lab.name)["paths"]
    assert [p["up"]["profile"] for p in after] == [p["up"]["profile"] for p in before]


def test_the_relay_checks_requests_itself(lab: LabInfo) -> None:
    # The control socket is the relay's own boundary: it validates, whoever asks.
    with pytest.raises(BraidError, match="out of range"):
        relay_request(lab.relay_socket, {"op": "set", "path": "hk",
                                         "changes": {"delay_ms": -5}})
    with pytest.raises(BraidError, match="unknown relay request"):
        relay_request(lab.relay_socket, {"op": "reboot"})
