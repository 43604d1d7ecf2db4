"""Probes for real: the one ICMP socket in a network namespace of the test's own, replies
blocked and unblocked with nft, raw and datagram sockets side by side, the namespace's
own link counters."""

from __future__ import annotations

import asyncio
import re
import secrets
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from app.core.engine import Engine
from app.core.grid import sleep_until
from app.core.linkstats import LinkCounters
from app.core.liveness import Health, HealthChange, LivenessConfig, ProbeTracker
from app.core.netns import enter_netns
from app.core.paths import PathRuntime
from app.core.pathstats import PathStats
from app.core.plan import PathSpec
from app.core.probe import (
    INNER_BYTES,
    WIRE_BYTES,
    ProbeRates,
    checksum,
    echo_request,
    parse_echo_reply,
    wire_bits_per_s,
)
from app.core.probing import ProbeSet
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


def block_replies(ns: str, on: bool, *, requests: bool = False) -> None:
    """Drop echo replies on input (they still count on lo's rx), or with ``requests``
    the requests on output (nothing of the probes reaches lo: a dead tunnel)."""
    if on:
        hook, kind = ("output", "echo-request") if requests else ("input", "echo-reply")
        sh("ip", "netns", "exec", ns, "nft", "add table inet t; "
           f"add chain inet t in {{ type filter hook {hook} priority 0; }}; "
           f"add rule inet t in icmp type {kind} drop")
    else:
        sh("ip", "netns", "exec", ns, "nft", "delete table inet t")


def path(name: str, address: str, target: str, interface: str = "lo",
         liveness: LivenessConfig | None = None) -> PathRuntime:
    spec = PathSpec(name=name, index=0, interface=interface, private_key="", preshared_key=None,
                    addresses=(f"{address}/32",), mtu=None, listen_port=None,
                    peer_public_key="", endpoint=None, allowed_ips=(), persistent_keepalive=None,
                    probe_target=target)
    stats = PathStats()
    return PathRuntime(spec=spec, cost=0.0, stats=stats,
                       tracker=ProbeTracker(stats, liveness or LivenessConfig()))


class Recorder:
    def __init__(self) -> None:
        self.changes: list[tuple[str, HealthChange]] = []
        self.replies = 0
        self.replies_of: Counter[str] = Counter()
        self.errors: list[str | None] = []

    def __call__(self, p: PathRuntime, change: HealthChange | None) -> None:
        if change is None:
            self.replies += 1
            self.replies_of[p.name] += 1
        else:
            self.changes.append((p.name, change))

    def error(self, p: PathRuntime, error: str | None) -> None:
        self.errors.append(error)

    def healths(self, name: str) -> list[Health]:
        return [c.new for n, c in self.changes if n == name]


def probe_set(paths: list[PathRuntime], rec: Recorder, interval: float = 0.02,
              privileged: bool = True) -> ProbeSet:
    rates = ProbeRates(active_s=interval, backup_s=interval, suspect_s=interval,
                       standby_s=interval)
    return ProbeSet(paths, rates, rec, rec.error, privileged=privileged)


def test_parse_echo_reply_skips_other_icmp() -> None:
    ip_header = bytes([0x45]) + bytes(11) + bytes([10, 0, 0, 1]) + bytes(4)
    reply = bytes([0, 0, 0, 0, 0x12, 0x34, 0, 7]) + b"tokn"
    assert parse_echo_reply(ip_header + reply, privileged=True) == (0x1234, 7, b"tokn",
                                                                     "10.0.0.1")
    assert parse_echo_reply(reply, privileged=False) == (0x1234, 7, b"tokn", "")
    assert parse_echo_reply(bytes([3, 1]) + bytes(6), privileged=False) is None
    assert parse_echo_reply(b"\x45", privileged=True) is None


def test_echo_request_checksum_is_valid_and_the_wire_cost_is_stated() -> None:
    packet = echo_request(0x1234, 7, b"tokn")
    assert checksum(packet) == 0  # a packet with its checksum sums to 0xFFFF
    assert len(packet) + 20 == INNER_BYTES == 32
    assert WIRE_BYTES == 92  # padded to 32, + 16 header + 16 tag + UDP 8 + IP 20
    assert wire_bits_per_s(0.010) == 73_600


def test_probes_measure_a_live_path(ns: str) -> None:
    rec = Recorder()
    p = path("p", "127.0.0.1", "127.0.0.1")

    async def go() -> ProbeSet:
        ps = probe_set([p], rec)
        ps.start()
        await wait_until_async(lambda: rec.replies >= 20, timeout=10)
        ps.stop()
        return ps

    ps = run_in(ns, go)
    assert p.tracker.health is Health.UP
    assert rec.healths("p")[0] is Health.UP
    m = p.stats.metrics()
    assert m.loss == 0.0 and m.rtt_ms is not None and m.rtt_ms < 50
    assert m.rtt_p50_ms is not None and m.jitter_ms is not None
    assert ps.sent >= 20
    # The kernel's receive stamps, not the batch's wake-up: loopback RTTs stay tiny even
    # though replies are read at the next tick (20 ms later).
    assert m.rtt_p50_ms < 5


def test_each_probe_leaves_from_its_paths_address_through_one_socket(ns: str) -> None:
    """Two paths, one socket: IP_PKTINFO's source per packet (what the path's rule
    `from <address> lookup <table>` routes by). An nft counter on output sees each."""
    sh("ip", "netns", "exec", ns, "nft", "add table inet c; "
       "add chain inet c out { type filter hook output priority 0; }; "
       "add rule inet c out ip saddr 10.77.0.1 icmp type echo-request counter; "
       "add rule inet c out ip saddr 127.0.0.1 icmp type echo-request counter")
    rec = Recorder()
    a, b = path("a", "127.0.0.1", "127.0.0.1"), path("b", "10.77.0.1", "10.77.0.1")

    async def go() -> None:
        ps = probe_set([a, b], rec)
        ps.start()
        await wait_until_async(lambda: a.stats.samples >= 10 and b.stats.samples >= 10,
                               timeout=10)
        ps.stop()

    run_in(ns, go)
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "table", "inet", "c"],
                         check=True, capture_output=True, text=True).stdout
    counts = [int(x) for x in re.findall(r"packets (\d+)", out)]
    assert len(counts) == 2 and min(counts) >= 10, out
    assert a.tracker.health is Health.UP and b.tracker.health is Health.UP


def test_blocked_path_is_suspected_then_declared_down_then_recovers(ns: str) -> None:
    rec = Recorder()
    p = path("p", "127.0.0.1", "127.0.0.1", interface="none0")

    async def go() -> None:
        ps = probe_set([p], rec)
        ps.start()
        await wait_until_async(lambda: rec.replies >= 10, timeout=10)
        block_replies(ns, True)
        await wait_until_async(lambda: p.tracker.health is Health.DOWN, timeout=10)
        down = rec.changes[-1][1]
        assert down.detection_s is not None
        # Bound (liveness.py): one interval + late_limit (50 ms + 20 ms) past the last
        # reply (loopback: RTT ~0), plus slack for a loaded machine.
        assert down.detection_s < 0.02 + p.tracker.late_limit_s() + 0.5
        block_replies(ns, False)
        await wait_until_async(lambda: p.tracker.health is Health.UP, timeout=10)
        ps.stop()

    run_in(ns, go)
    seen = rec.healths("p")
    assert seen[0] is Health.UP
    assert Health.SUSPECT in seen
    assert seen[-2:] == [Health.DOWN, Health.UP]


def test_raw_and_datagram_sockets_only_see_their_own_replies(ns: str) -> None:
    a, b, c = Recorder(), Recorder(), Recorder()
    pa, pb = path("a", "127.0.0.1", "127.0.0.1"), path("b", "10.77.0.1", "10.77.0.1")
    pc = path("c", "127.0.0.1", "127.0.0.1")

    async def go() -> list[ProbeSet]:
        sets = [probe_set([pa], a), probe_set([pb], b), probe_set([pc], c, privileged=False)]
        for s in sets:
            s.start()
        await wait_until_async(lambda: min(a.replies, b.replies, c.replies) >= 20,
                               timeout=10)
        for s in sets:
            s.stop()
        return sets

    sets = run_in(ns, go)
    for s, p in zip(sets, (pa, pb, pc), strict=True):
        # Every reply matched one of its own outstanding probes, none was foreign.
        assert p.stats.samples <= s.sent
        assert p.tracker.health is Health.UP


def test_interval_change_takes_effect_at_once(ns: str) -> None:
    rec = Recorder()
    p = path("p", "127.0.0.1", "127.0.0.1")

    async def go() -> float:
        ps = ProbeSet([p], ProbeRates(active_s=0.01, standby_s=5.0, suspect_s=5.0,
                                      backup_s=5.0), rec, rec.error)
        ps.start()
        await wait_until_async(lambda: p.tracker.health is Health.UP, timeout=5)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        ps.set_rates([], warming=False, backup="p")
        assert ps.interval_of("p") == 5.0  # the backup rate here
        ps.set_rates([], warming=False)
        assert ps.interval_of("p") == 5.0  # a standby
        ps.set_rates(["p"], warming=False)
        assert ps.interval_of("p") == 0.01
        await wait_until_async(lambda: p.stats.samples >= 5, timeout=5, interval=0.005)
        ps.stop()
        return loop.time() - t0

    assert run_in(ns, go) < 4.0


def test_every_path_is_probed_at_the_busy_paths_wake_ups(ns: str) -> None:
    """A path probed every 50 ms whose rate changed at an odd moment (it just became the
    backup) sends at wake-ups of the busy path's 10 ms ones (grid.py): its probes add
    no wake-up of their own, after its first."""
    rec = Recorder()
    busy, backup = path("busy", "127.0.0.1", "127.0.0.1"), path("backup", "10.77.0.1",
                                                                 "10.77.0.1")
    stop = threading.Event()

    def stream() -> None:  # traffic on busy's "tunnel" (lo): it is probed at the active rate
        enter_netns(ns)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while not stop.wait(0.005):
                s.sendto(b"x", ("127.0.0.1", 9))

    async def go() -> tuple[int, int, int]:
        sender = threading.Thread(target=stream, daemon=True)
        sender.start()
        ps = ProbeSet([busy, backup], ProbeRates(active_s=0.010, backup_s=0.050,
                                                 suspect_s=0.020, standby_s=5.0),
                      rec, rec.error)
        ps.start()
        await wait_until_async(lambda: busy.tracker.health is Health.UP and
                               backup.tracker.health is Health.UP, timeout=10)
        ps.set_rates(["busy"], warming=False)
        await wait_until_async(lambda: ps.interval_of("busy") == 0.010, timeout=10)
        loop = asyncio.get_running_loop()
        # Off the grid: a moment 3.7 ms past one of its points.
        await sleep_until(loop, ps.grid.at_or_after(loop.time()) + 0.0037)
        ps.set_rates(["busy"], warming=False, backup="backup")
        assert ps.interval_of("backup") == 0.050
        n = rec.replies_of["backup"]  # its first probe (at once), then one on the grid
        await wait_until_async(lambda: rec.replies_of["backup"] >= n + 2, timeout=5,
                               interval=0.005)
        w0, s0, b0 = ps.wakeups, ps.sent, rec.replies_of["backup"]
        t0 = loop.time()
        await wait_until_async(lambda: loop.time() - t0 >= 1.0, timeout=5)
        w, s, b = ps.wakeups - w0, ps.sent - s0, rec.replies_of["backup"] - b0
        ps.stop()
        stop.set()
        sender.join()
        return w, s, b

    wakeups, sent, backup_sent = run_in(ns, go)
    # (counted by their replies: on loopback every probe is answered)
    assert backup_sent >= 10, (wakeups, sent, backup_sent)  # every 50 ms for a second
    # Every wake-up sends the busy path's probe; the backup's ride along (a late wake-up
    # on a loaded machine may add one or two of its own).
    assert wakeups <= sent - backup_sent + 3, (wakeups, sent, backup_sent)


def test_link_counters_are_the_namespaces_own(ns: str) -> None:
    """Read on a thread inside the namespace, the counters are that namespace's loopback
    (not the host's), and they rise with what the loopback carries."""

    async def go() -> tuple[int, int]:
        links = LinkCounters()
        before = links.read(["lo", "no-such0"])
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(50):
                s.sendto(b"x", ("127.0.0.1", 9))
        after = links.read(["lo"])
        links.close()
        assert set(before) == {"lo"}
        return before["lo"].rx_packets, after["lo"].rx_packets

    rx0, rx1 = run_in(ns, go)
    assert rx0 < 1000 and rx1 >= rx0 + 50  # a fresh namespace's lo: nearly nothing yet


def test_a_stream_on_the_tunnel_vetoes_silence_and_its_stop_is_suspected(ns: str) -> None:
    """Replies blocked while the path's interface keeps receiving (a stream on lo):
    never down. The stream stops: down. (A 300 ms allowance here, not 50 ms: a sender
    thread on a busy test machine stalls for longer than 50 ms now and then.)"""
    rec = Recorder()
    p = path("p", "127.0.0.1", "127.0.0.1", liveness=LivenessConfig(late_step_s=0.3))
    stop = threading.Event()

    def stream() -> None:
        enter_netns(ns)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            while not stop.wait(0.002):
                s.sendto(b"x", ("127.0.0.1", 9))

    async def go() -> None:
        sender = threading.Thread(target=stream, daemon=True)
        sender.start()
        ps = probe_set([p], rec, interval=0.01)
        ps.start()
        await wait_until_async(lambda: rec.replies >= 10, timeout=10)
        block_replies(ns, True, requests=True)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        # four times the silence that declares down (every change is recorded: none is)
        await wait_until_async(lambda: loop.time() - t0 >= 1.5, timeout=5)
        assert Health.DOWN not in rec.healths("p")
        stop.set()
        await wait_until_async(lambda: p.tracker.health is Health.DOWN, timeout=10)
        ps.stop()
        sender.join()

    run_in(ns, go)
    assert p.tracker.last_rx is not None
    assert [h for h in rec.healths("p") if h is Health.DOWN] == [Health.DOWN]


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
