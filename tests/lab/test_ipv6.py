"""A lab built with IPv6 (the contract for IPv6 through the tunnels): the client's ISP
speaks IPv6 too, so what leaves outside the tunnels can be seen there; the tunnels and
the far side carry it, the shared exit translating it as it does IPv4. One lab for the
module, with a plain client (plain_client.py)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.lab import proc, stream, topology
from app.lab.control import impair, status
from app.lab.profile import lab_profile
from app.lab.scenario import load_scenario
from tests.lab.plain_client import SERVER6, PlainClient, lab_with_client
from tests.util import wait_until

SCENARIO = {"path": [{"name": "hk", "delay_ms": 10}, {"name": "tyo", "delay_ms": 15}]}
LEAK = ("table inet leak {\n chain in { type filter hook prerouting priority 0;\n"
        f'  iifname "cl0" ip6 daddr {SERVER6} udp dport 9000 counter; }}\n}}\n')


@pytest.fixture(scope="module")
def client() -> Iterator[PlainClient]:
    with lab_with_client(SCENARIO, exit="shared", ipv6=True, baseline="hk") as plain:
        plain.route_server6("hk")
        yield plain


def test_the_address_plan(client: PlainClient) -> None:
    info = client.info
    assert info.ipv6 and [g.client_address6 for g in info.gateways] == [
        "2001:2:0:c0::2/128", "2001:2:0:c0::2/128"]
    routes = proc.run_in_ns(client.ns, ["ip", "-6", "route", "show", "default"])
    assert "via 2001:2::1 dev wan0" in routes  # its dual-stack ISP
    profile, _ = lab_profile(info, load_scenario("clean"))
    hk = profile.gateway("hk")
    assert hk.addresses == ("198.19.100.2/32", "2001:2:0:c0::2/128")
    assert hk.peer.allowed_ips == ("0.0.0.0/0", "::/0")


def test_ipv6_outside_the_tunnels_reaches_the_isp_where_it_can_be_seen(
        client: PlainClient) -> None:
    wan = topology.netns(client.info.name, "wan")
    proc.run_in_ns(wan, ["nft", "-f", "-"], LEAK)
    try:
        client.ip("-6", "route", "del", f"{SERVER6}/128")  # as if no tunnel carried IPv6
        r = stream.stream(client.info.name, pps=100, duration=0.3, size=100, ipv6=True,
                          wait=0.3)
        assert r.received == 0  # the wan forwards nothing...
        out = proc.run_in_ns(wan, ["nft", "list", "table", "inet", "leak"])
        assert "packets 30 " in out, out  # ...but it saw every packet leave outside
    finally:
        client.route_server6("hk")
        proc.run_in_ns(wan, ["nft", "delete", "table", "inet", "leak"])


def test_ipv6_through_the_tunnels_and_the_shared_exit(client: PlainClient,
                                                       config_dir: Path) -> None:
    lab = client.info.name
    base = stream.stream(lab, pps=200, duration=0.5, size=200, baseline=True, ipv6=True)
    assert base.received == base.sent and base.server_sources == 1

    def through(path: str) -> int:
        doc = next(p for p in status(lab)["paths"] if p["name"] == path)
        return int(doc["up"]["counters"]["in_pkts"])

    hk0 = through("hk")
    run = stream.start(lab, pps=200, duration=3.0, size=200, sticky=True, ipv6=True)
    wait_until(lambda: through("hk") > hk0 + 200, timeout=10,
               message="the IPv6 stream never went through hk")
    client.route_server6("tyo")
    impair(lab, "hk", {"down": True})
    r = run.result()
    impair(lab, "hk", {}, reset=True)
    # One source at the far end for the whole run, from the exit's IPv6 uplink.
    assert r.server_sources == 1 and r.ignored == 0 and r.loss_pct < 5, r
    out = subprocess.run(
        ["ip", "netns", "exec", topology.netns(lab, "exit"), "conntrack", "-L", "-f",
         "ipv6", "-p", "udp", "--orig-src", "2001:2:0:c0::2"],
        capture_output=True, text=True, check=True).stdout
    assert "2001:2:0:99::1" in out  # translated onto the exit's address


def test_the_far_end_keeps_its_neighbour_the_exit_while_ipv6_flows(
        client: PlainClient) -> None:
    """A stale neighbour entry is confirmed by a unicast solicitation from an address of
    the link; the far end answers from an address on its loopback (the server's) and,
    with no link-local address on the link, the kernel sends no solicitation at all: the
    entry fails and IPv6 through the exit stops for seconds. Forced stale here, with the
    kernel's 5 s wait before the first probe shortened to 1 s."""
    lab = client.info.name
    server = topology.netns(lab, "server")
    proc.run_in_ns(server, ["sysctl", "-qw", "net.ipv6.neigh.exit.delay_first_probe_time=1"])
    base = stream.stream(lab, pps=100, duration=0.3, size=100, sticky=True, ipv6=True)
    assert base.received == base.sent, base

    def entry() -> str:
        return proc.run_in_ns(server, ["ip", "-6", "neigh", "show", "2001:2:0:99::1",
                                       "dev", "exit"])

    mac = entry().split("lladdr ")[1].split()[0]
    proc.run_in_ns(server, ["ip", "-6", "neigh", "change", "2001:2:0:99::1", "lladdr", mac,
                            "dev", "exit", "nud", "stale"])
    run = stream.start(lab, pps=100, duration=6.0, size=100, sticky=True, ipv6=True)
    states: list[str] = []
    wait_until(lambda: states.append(entry()) or "REACHABLE" in states[-1], timeout=10,
               message="the far end never confirmed its neighbour, the exit")
    r = run.result()
    assert not any("FAILED" in s for s in states), states
    assert r.received >= r.sent - 2, r
