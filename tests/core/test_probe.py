"""Probes for real: icmplib sockets in a network namespace of the test's own, replies
blocked and unblocked with nft, raw and datagram sockets side by side."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from app.core.engine import Engine
from app.core.liveness import Health, HealthChange, ProbeTracker
from app.core.netns import enter_netns
from app.core.pathstats import PathStats
from app.core.probe import Prober, parse_echo_reply
from app.core.profiles.model import Gateway, GatewaySecrets, Peer, Profile
from tests.util import wait_until_async, wg_keypair

T = TypeVar("T")


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture
def ns() -> Iterator[str]:
    name = f"braidt-{secrets.token_hex(2)}"
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "-n", name, "addr", "add", "10.77.0.1/32", "dev", "lo")
        sh("ip", "netns", "exec", name, "sysctl", "-qw",
           "net.ipv4.ping_group_range=0 2147483647")
        yield name
    finally:
        sh("ip", "netns", "delete", name)


def run_in(ns: str, make: Callable[[], Awaitable[T]], timeout: float = 60) -> T:
    """Run a coroutine on a fresh loop in a thread inside ``ns``."""
    box: dict[str, object] = {}

    def main() -> None:
        try:
            enter_netns(ns)
            box["result"] = asyncio.run(asyncio.wait_for(make(), timeout))  # type: ignore[arg-type]
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=main)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    return box["result"]  # type: ignore[return-value]


def block_replies(ns: str, on: bool) -> None:
    if on:
        sh("ip", "netns", "exec", ns, "nft", "add table inet t; "
           "add chain inet t in { type filter hook input priority 0; }; "
           "add rule inet t in icmp type echo-reply drop")
    else:
        sh("ip", "netns", "exec", ns, "nft", "delete table inet t")


class Recorder:
    def __init__(self) -> None:
        self.changes: list[HealthChange] = []
        self.rtts: list[float] = []

    def __call__(self, prober: Prober, change: HealthChange | None, rtt: float | None) -> None:
        if change is not None:
            self.changes.append(change)
        if rtt is not None:
            self.rtts.append(rtt)


def make_prober(target: str, source: str, rec: Recorder, ident: int, interval: float = 0.02,
                privileged: bool = True) -> Prober:
    return Prober("p", source, target, ProbeTracker(PathStats()), rec, ident=ident,
                  interval_s=interval, privileged=privileged)


def test_parse_echo_reply_skips_other_icmp() -> None:
    ip_header = bytes([0x45]) + bytes(19)
    reply = bytes([0, 0, 0, 0, 0x12, 0x34, 0, 7])
    assert parse_echo_reply(ip_header + reply, privileged=True) == (0x1234, 7)
    assert parse_echo_reply(reply, privileged=False) == (0x1234, 7)
    assert parse_echo_reply(bytes([3, 1]) + bytes(6), privileged=False) is None
    assert parse_echo_reply(b"\x45", privileged=True) is None


def test_probe_measures_a_live_path(ns: str) -> None:
    rec = Recorder()

    async def go() -> Prober:
        p = make_prober("127.0.0.1", "127.0.0.1", rec, ident=4242)
        p.start()
        await wait_until_async(lambda: len(rec.rtts) >= 20, timeout=10)
        p.stop()
        return p

    p = run_in(ns, go)
    assert p.tracker.health is Health.UP
    assert rec.changes[0].new is Health.UP
    m = p.tracker.stats.metrics()
    assert m.loss == 0.0 and m.rtt_ms is not None and m.rtt_ms < 50
    assert m.rtt_p50_ms is not None and m.jitter_ms is not None


def test_blocked_path_is_suspected_then_declared_down_then_recovers(ns: str) -> None:
    rec = Recorder()

    async def go() -> list[Health]:
        p = make_prober("127.0.0.1", "127.0.0.1", rec, ident=4343)
        p.start()
        await wait_until_async(lambda: len(rec.rtts) >= 10, timeout=10)
        block_replies(ns, True)
        await wait_until_async(lambda: p.tracker.health is Health.DOWN, timeout=10)
        down = rec.changes[-1]
        assert down.detection_s is not None
        # Bound (liveness.py): K=3 intervals + srtt + margin (20 ms), plus slack for a
        # loaded CI machine (the namespace is loopback: RTT ~0).
        assert down.detection_s < 3 * 0.02 + 0.02 + 0.5
        block_replies(ns, False)
        await wait_until_async(lambda: p.tracker.health is Health.UP, timeout=10)
        p.stop()
        return [c.new for c in rec.changes]

    seen = run_in(ns, go)
    assert seen[0] is Health.UP
    assert Health.SUSPECT in seen
    assert seen[-2:] == [Health.DOWN, Health.UP]


def test_raw_and_datagram_probers_only_see_their_own_replies(ns: str) -> None:
    a, b, c = Recorder(), Recorder(), Recorder()

    async def go() -> list[Prober]:
        probers = [
            make_prober("127.0.0.1", "127.0.0.1", a, ident=1001),
            make_prober("10.77.0.1", "10.77.0.1", b, ident=1002),
            make_prober("127.0.0.1", "127.0.0.1", c, ident=0, privileged=False),
        ]
        for p in probers:
            p.start()
        await wait_until_async(lambda: min(len(a.rtts), len(b.rtts), len(c.rtts)) >= 20,
                               timeout=10)
        for p in probers:
            p.stop()
        return probers

    probers = run_in(ns, go)
    for p in probers:
        # Every reply matched one of its own outstanding probes, none was foreign.
        assert p.tracker.stats.samples <= p.sent
        assert p.tracker.health is Health.UP


def test_interval_change_takes_effect_at_once(ns: str) -> None:
    rec = Recorder()

    async def go() -> float:
        p = make_prober("127.0.0.1", "127.0.0.1", rec, ident=4444, interval=5.0)
        p.start()
        await wait_until_async(lambda: len(rec.rtts) >= 1, timeout=5)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        p.set_interval(0.01)
        await wait_until_async(lambda: len(rec.rtts) >= 5, timeout=5, interval=0.005)
        p.stop()
        return loop.time() - t0

    assert run_in(ns, go) < 4.0


def test_engine_pings_the_gateways_probe_address_else_the_default(tmp_path: Path) -> None:
    """A profile's `probe` (docs/profiles.md) is the path's target; without it, the
    first host of the tunnel's network; a lab's own targets win over both."""
    keys = GatewaySecrets(private_key=wg_keypair()[0], preshared_key=None)

    def gw(name: str, address: str, probe: str | None) -> Gateway:
        return Gateway(name=name, interface=f"br-{name}", addresses=(address,), dns=(),
                       mtu=None, listen_port=None, probe=probe,
                       peer=Peer(public_key=wg_keypair()[1], endpoint="192.0.2.1:51820",
                                 allowed_ips=("0.0.0.0/0",), persistent_keepalive=None))

    profile = Profile(name="p", gateways=(gw("a", "10.8.0.2/32", "10.9.9.9"),
                                          gw("b", "10.7.0.2/24", None)))
    engine = Engine(profile, {"a": keys, "b": keys}, tmp_path / "none.sock", lambda s: None)
    assert [p.target for p in engine.paths] == ["10.9.9.9", "10.7.0.1"]
    lab = Engine(profile, {"a": keys, "b": keys}, tmp_path / "none.sock", lambda s: None,
                 probe_targets={"a": "198.19.0.1"})
    assert lab.paths[0].target == "198.19.0.1"
