"""The relay runs the scenario's timeline itself: episodes start, end, and drifts move."""

from __future__ import annotations

import subprocess

from app.lab.control import status
from app.lab.scenario import parse_scenario
from tests.lab.conftest import LabFactory
from tests.util import wait_until

SCENARIO = {
    "path": [{"name": "hk", "delay_ms": 10}, {"name": "tyo", "delay_ms": 10}],
    "timeline": [
        {"at": 0, "path": "hk", "for": 3, "ramp": True, "set": {"delay_ms": 100}},
        {"at": 0.5, "path": "tyo", "for": 1, "dir": "up", "set": {"loss_pct": 50}},
        {"at": 0.5, "path": "tyo", "link": "backbone", "for": 1, "set": {"down": True}},
    ],
}


def profile(lab: str, path: str, direction: str, link: str = "wan") -> dict[str, float]:
    doc = next(p for p in status(lab)["paths"] if p["name"] == path)
    prof: dict[str, float] = (doc if link == "wan" else doc[link])[direction]["profile"]
    return prof


def test_episodes_and_drifts_follow_the_clock(lab_factory: LabFactory) -> None:
    info = lab_factory(parse_scenario(SCENARIO, name="tl", where="test"))
    lab = info.name
    wait_until(lambda: profile(lab, "tyo", "up")["loss_pct"] == 50, timeout=5,
               message="tyo's loss episode never started")
    assert profile(lab, "tyo", "down")["loss_pct"] == 0  # up only
    wait_until(lambda: profile(lab, "tyo", "down", "backbone")["down"], timeout=5,
               message="tyo's backbone outage never started")
    assert not profile(lab, "tyo", "up")["down"]  # the backbone's, not the wan's
    wait_until(lambda: 20 < profile(lab, "hk", "up")["delay_ms"] < 90, timeout=5,
               message="hk's delay never drifted through the middle")
    wait_until(lambda: profile(lab, "tyo", "up")["loss_pct"] == 0, timeout=5,
               message="tyo's loss episode never ended")
    assert not profile(lab, "tyo", "up", "backbone")["down"]
    wait_until(lambda: profile(lab, "hk", "up")["delay_ms"] == 100, timeout=6,
               message="hk's drift never reached its target")
    assert profile(lab, "hk", "down")["delay_ms"] == 100
    assert status(lab)["timeline_left"] == 0


def test_server_http_answers_through_the_baseline(lab_factory: LabFactory) -> None:
    info = lab_factory("clean", baseline="sgp")
    out = subprocess.run(
        ["ip", "netns", "exec", f"braid-{info.name}-base", "python3", "-c",
         "import urllib.request as u;"
         "print(u.urlopen('http://198.18.200.1:8080/').read().decode(), end='');"
         "print(len(u.urlopen('http://198.18.200.1:8080/bytes/100000').read()))"],
        capture_output=True, text=True, check=True, timeout=30).stdout
    assert out == "braid lab server\n100000\n"
