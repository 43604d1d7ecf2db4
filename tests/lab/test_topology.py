"""Building and removing labs: real namespaces, wireguard-go, relay and server apps."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from app.core.errors import BraidError
from app.lab import nodes, proc, topology
from app.lab.model import LAB_NAME
from app.lab.stream import stream
from tests.lab.conftest import LabFactory, leftovers, unique_lab


def test_build_makes_the_address_plan_and_destroy_leaves_nothing(
        lab_factory: LabFactory) -> None:
    info = lab_factory("clean", baseline="tyo")
    lab = info.name
    assert [(g.name, g.index, g.endpoint) for g in info.gateways] == [
        ("hk", 0, "198.18.0.1:51000"), ("tyo", 1, "198.18.0.1:51001"),
        ("sgp", 2, "198.18.0.1:51002")]
    assert info.gateway("sgp").client_address == "198.19.2.2/32"
    assert info.gateway("hk").client_interface == f"br-{lab}-hk"
    assert sorted(ns for ns in proc.namespaces() if ns.startswith(f"braid-{lab}-")) == sorted(
        topology.netns(lab, n) for n in ("client", "base", "wan", "server", "gw-hk", "gw-tyo",
                                         "gw-sgp"))
    # The client reaches the wan, and nothing beyond it but through a relay.
    out = subprocess.run(["ip", "-n", topology.netns(lab, "client"), "route", "get",
                          "198.18.200.1"], capture_output=True, text=True).stdout
    assert "via 198.18.0.1" in out
    assert topology.load(lab) == info
    # No IPv6 link-local anywhere: nothing in a built lab keeps changing by itself (DAD
    # would add routes for a second or two, under the feet of before/after comparisons).
    for ns in (n for n in proc.namespaces() if n.startswith(f"braid-{lab}-")):
        assert proc.run_in_ns(ns, ["ip", "-6", "addr", "show", "scope", "link"]) == "", ns
    keys = info.runtime_dir / "keys.json"
    assert (keys.stat().st_mode & 0o777) == 0o600
    # Without a tunnel the client has no way to the server: the wan forwards nothing.
    assert stream(lab, pps=100, duration=0.2, size=100, wait=0.3).received == 0
    # The baseline tunnel works end to end: gateway, relay, server.
    result = stream(lab, pps=200, duration=1.0, size=100, baseline=True)
    assert result.received == result.sent == 200
    topology.destroy(lab)
    assert leftovers(lab) == []
    topology.destroy(lab)  # idempotent
    assert leftovers(lab) == []


def test_destroy_after_a_crash_finds_everything_by_name(lab_factory: LabFactory) -> None:
    info = lab_factory("clean", baseline="hk")
    lab = info.name
    # Everything the lab runs dies at once, without a chance to clean up (kill -9).
    for ns in proc.namespaces():
        if ns.startswith(f"braid-{lab}-"):
            for pid in proc.ns_pids(ns):
                os.kill(pid, signal.SIGKILL)
    (info.runtime_dir / "lab.json").unlink()  # and its record is half gone
    assert lab in topology.lab_names()
    topology.destroy(lab)
    assert leftovers(lab) == []


def test_a_failed_build_removes_what_it_built(monkeypatch: pytest.MonkeyPatch) -> None:
    # A failure injected late (after namespaces, gateways and the relay are up): the
    # server apps "fail to start".
    def fail(info: topology.LabInfo) -> None:
        raise BraidError("server apps did not start", "")

    monkeypatch.setattr(nodes, "start_servers", fail)
    lab = unique_lab()
    with pytest.raises(BraidError, match="server apps did not start"):
        topology.build(lab, "clean", start_helper=False, write_profile=False)
    assert leftovers(lab) == []


def test_two_labs_side_by_side(lab_factory: LabFactory) -> None:
    one, two = lab_factory("clean", baseline="hk"), lab_factory("clean", baseline="sgp")
    a = stream(one.name, pps=200, duration=1.0, size=100, baseline=True)
    b = stream(two.name, pps=200, duration=1.0, size=100, baseline=True)
    assert a.received == a.sent and b.received == b.sent
    # Each went through its own lab's own path (hk 15 ms, sgp 35 ms one way).
    assert a.delay_up is not None and b.delay_up is not None
    assert a.delay_up.p50 == pytest.approx(15, abs=3)
    assert b.delay_up.p50 == pytest.approx(35, abs=3)
    topology.destroy(one.name)
    assert leftovers(one.name) == []
    assert stream(two.name, pps=100, duration=0.5, size=100, baseline=True).received == 50


@pytest.mark.parametrize(("kwargs", "says"), [
    ({"lab": "Lab-1"}, "lab name 'Lab-1' is not valid"),
    ({"lab": "toolong"}, "lab name 'toolong' is not valid"),
    ({"scenario": "nowhere"}, "no scenario named 'nowhere'"),
    ({"baseline": "xx"}, "has no path 'xx'"),
    ({"helper_grace_seconds": -5}, "is negative"),
])
def test_bad_input_is_refused_before_anything_is_built(kwargs: dict[str, object],
                                                       says: str) -> None:
    args = {"lab": unique_lab(), "scenario": "clean", **kwargs}
    lab = str(args.pop("lab"))
    with pytest.raises(BraidError, match=says):
        topology.build(lab, args.pop("scenario"), start_helper=False,  # type: ignore[arg-type]
                       write_profile=False, **args)  # type: ignore[arg-type]
    if LAB_NAME.match(lab):
        assert leftovers(lab) == []


def test_an_existing_lab_is_not_built_over(lab_factory: LabFactory) -> None:
    info = lab_factory("clean")
    with pytest.raises(BraidError, match="already exists") as err:
        topology.build(info.name, "clean", start_helper=False, write_profile=False)
    assert f"braid lab down --name {info.name}" in err.value.fix
    assert topology.load(info.name) == info  # untouched
