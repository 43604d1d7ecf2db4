"""Separate exits (each gateway its own NAT): today's topology, kept for gateways that
each have their own exit. The backbone is the gateway's own way to the far side, in
series after the international link; and a moved flow reaches the far end from another
address, which a far end that answers only its first address ignores. One lab for the
module, with the plain client of plain_client.py and a client-side masquerade as the
engine has on separate exits.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.lab import proc, stream, topology
from app.lab.control import impair, status
from tests.lab.plain_client import PlainClient, lab_with_client
from tests.util import wait_until

SCENARIO = {
    "path": [
        {"name": "hk", "delay_ms": 10, "backbone": {"delay_ms": 20}},
        {"name": "tyo", "delay_ms": 15, "backbone": {"delay_ms": 5}},
    ],
}
MASQUERADE = """table ip plain {
 chain post { type nat hook postrouting priority srcnat; oifname "br-*" masquerade; }
}
"""


@pytest.fixture(scope="module")
def client() -> Iterator[PlainClient]:
    with lab_with_client(SCENARIO, baseline="hk") as plain:
        proc.run_in_ns(plain.ns, ["nft", "-f", "-"], MASQUERADE)
        yield plain


def test_each_gateway_is_its_own_exit(client: PlainClient) -> None:
    info = client.info
    assert info.exit == "separate"
    assert [g.client_address for g in info.gateways] == ["198.19.0.2/32", "198.19.1.2/32"]
    assert [g.probe for g in info.gateways] == ["198.19.0.1", "198.19.1.1"]
    assert not proc.ns_exists(topology.netns(info.name, "exit"))
    for gw in info.gateways:
        assert client.answers(gw.probe) == 3


def test_the_backbone_is_in_series_after_the_international_link(client: PlainClient) -> None:
    lab = client.info.name
    r = stream.stream(lab, pps=200, duration=1.0, size=200, baseline=True)
    assert r.delay_up is not None and r.delay_up.p50 == pytest.approx(30, abs=3)  # 10 + 20
    impair(lab, "hk", {"delay_ms": 40.0}, ("down",), link="backbone")
    r = stream.stream(lab, pps=200, duration=1.0, size=200, baseline=True)
    assert r.delay_down is not None and r.delay_down.p50 == pytest.approx(50, abs=3)
    impair(lab, "hk", {}, reset=True, link="backbone")
    hk = next(p for p in status(lab)["paths"] if p["name"] == "hk")
    assert hk["backbone"]["up"]["counters"]["out_pkts"] >= 400


def test_a_failed_over_session_reaches_the_far_end_from_another_address(
        client: PlainClient) -> None:
    lab = client.info.name
    client.route_server("hk")

    def through(path: str, direction: str = "up") -> int:
        doc = next(p for p in status(lab)["paths"] if p["name"] == path)
        return int(doc[direction]["counters"]["out_pkts"])

    hk0, tyo0 = through("hk"), through("tyo")
    run = stream.start(lab, pps=200, duration=3.0, size=200, sticky=True)
    wait_until(lambda: through("hk") > hk0 + 200, timeout=10,
               message="the stream never got going through hk")
    # hk dies; once what it still carried has arrived, the flow fails over to tyo. The
    # client's masquerade gives it tyo's address (the kernel drops a masqueraded flow's
    # entry when its way out changes; the next packet is translated anew), tyo's NAT
    # its own. (Before that, a late answer through hk would make the flow's new entry
    # untranslated: tyo would drop it, silent in another way.)
    impair(lab, "hk", {"down": True})
    seen: list[int] = []

    def drained() -> bool:  # nothing more left hk towards the client since the last look
        seen.append(through("hk", "down"))
        return len(seen) > 1 and seen[-1] == seen[-2]

    wait_until(drained, timeout=5, interval=0.05, message="hk kept delivering after it died")
    client.route_server("tyo")
    r = run.result()
    impair(lab, "hk", {}, reset=True)
    assert through("tyo") > tyo0 + 100  # it went through tyo...
    # ...and reached the far end from tyo's address, which it ignored: the call is silent.
    assert r.server_sources == 2 and r.ignored is not None and r.ignored > 100, r
    assert r.loss_pct > 20
