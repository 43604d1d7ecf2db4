"""The roles' states: every field checked, errors naming the field path; and the plan a
state becomes (pure: no root, no kernel)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from app.node.confine import EXIT, GATEWAY, exit_priorities, exit_table
from app.node.plan import NodeRule, plan
from app.node.state import (
    ExitState,
    GatewayState,
    parse_node,
    redacted,
    to_json,
)
from app.wire.doc import StateError
from tests.util import wg_keypair

K1, P1 = wg_keypair()
K2, P2 = wg_keypair()
K3, P3 = wg_keypair()


def gateway_doc() -> dict[str, Any]:
    return {"role": "gateway", "name": "hk",
            "tunnel": {"name": "bg-hk", "private_key": K1, "listen_port": 51820,
                       "addresses": ["10.77.1.1/24"]},
            "clients": [{"public_key": P2, "allowed_ips": ["10.77.0.2/32"]}],
            "backbone": {"name": "bg-hk-x", "private_key": K2,
                         "exit": {"public_key": P3, "endpoint": "203.0.113.10:51821"}}}


def exit_doc() -> dict[str, Any]:
    return {"role": "exit", "name": "la", "egress": "eth0", "clients": ["10.77.0.0/24"],
            "gateways": [
                {"name": "hk", "mark": 1, "public_key": P1,
                 "tunnel": {"name": "bx-hk", "private_key": K1, "listen_port": 51821,
                            "addresses": ["10.77.101.1/32"]}},
                {"name": "tyo", "mark": 2, "public_key": P2,
                 "tunnel": {"name": "bx-tyo", "private_key": K2, "listen_port": 51822,
                            "addresses": ["10.77.102.1/32"]}}]}


def test_a_gateway_parses_and_goes_back_to_the_same_document() -> None:
    state = parse_node(gateway_doc())
    assert isinstance(state, GatewayState) and state.backbone is not None
    assert state.backbone.peers[0].persistent_keepalive == 25  # it calls the exit
    assert state.backbone.peers[0].allowed_ips == ("0.0.0.0/0", "::/0")
    assert state.tunnel.mtu == 1420
    assert parse_node(to_json(state)) == state
    shown = redacted(state)
    assert K1 not in str(shown) and K2 not in str(shown) and P2 in str(shown)


def test_an_exit_parses_and_goes_back_to_the_same_document() -> None:
    state = parse_node(exit_doc())
    assert isinstance(state, ExitState)
    assert [link.tunnel.peers[0].allowed_ips for link in state.links] == \
        [("10.77.0.0/24",)] * 2
    assert parse_node(to_json(state)) == state


def _set(doc: dict[str, Any], field: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *path, last = field.split(".")
    where: Any = doc
    for part in path:
        where = where[int(part)] if part.isdigit() else where[part]
    if value is DELETE:
        del where[last]
    else:
        where[last] = value
    return doc


DELETE = object()
GATEWAY_BAD: list[tuple[str, Any, str, str]] = [
    ("role", "router", "role", "must be one of: gateway, exit"),
    ("name", "HK", "name", "is not a gateway name"),
    ("tunnel.listen_port", 0, "tunnel.listen_port", "0 is out of range 1..65535"),
    ("tunnel.listen_port", DELETE, "tunnel.listen_port", "missing"),
    ("tunnel.name", "br-hk", "tunnel.name", "is not a gateway interface name"),
    ("tunnel.name", "bg-" + "x" * 13, "tunnel.name", "is not a gateway interface name"),
    ("tunnel.addresses", ["10.77.1.1/24", "10.77.1.1/24"], "tunnel.addresses[1]",
     "duplicate address"),
    ("tunnel.addresses", ["fe80::1%eth0"], "tunnel.addresses[0]", "scope ids"),
    ("clients.0.allowed_ips", ["0.0.0.0/0"], "clients[0].allowed_ips[0]",
     "is every address"),
    ("clients.0.allowed_ips", [], "clients[0].allowed_ips", "needs at least 1 entry"),
    ("clients.0.endpoint", "1.2.3.4:5", "clients[0].endpoint", "unknown field"),
    ("backbone.name", "bg-hk", "backbone.name", "must differ from tunnel.name"),
    ("backbone.exit.persistent_keepalive", 70000, "backbone.exit.persistent_keepalive",
     "out of range"),
    ("backbone.exit.public_key", "not a key", "backbone.exit.public_key", "is not base64"),
    ("egress", "bg-hk", "egress", "is one of Braid's own tunnels"),
    ("egress", 'eth0" drop', "egress", "is not an interface name"),
]


def test_two_clients_cannot_claim_one_address() -> None:
    doc = gateway_doc()
    doc["clients"].append({"public_key": P1, "allowed_ips": ["10.77.0.0/30"]})
    with pytest.raises(StateError) as err:
        parse_node(doc)
    assert err.value.path == "clients[1].allowed_ips[0]" and "overlaps" in err.value.reason


EXIT_BAD: list[tuple[str, Any, str, str]] = [
    ("gateways.1.mark", 1, "gateways[1]", "duplicate mark"),
    ("gateways.1.mark", 15, "gateways[1].mark", "15 is out of range 1..14"),
    ("gateways.1.tunnel.listen_port", 51821, "gateways[1]", "duplicate tunnel.listen_port"),
    ("gateways.1.tunnel.name", "bx-hk", "gateways[1]", "duplicate tunnel.name"),
    ("gateways.1.tunnel.name", "bg-tyo", "gateways[1].tunnel.name",
     "is not a exit interface name"),
    ("gateways.1.tunnel.addresses", ["10.77.101.1/32"], "gateways[1].tunnel.addresses[0]",
     "another gateway's link has this address"),
    ("gateways.0.tunnel.addresses", ["10.77.101.0/24"], "gateways[0].tunnel.addresses[0]",
     "is not a host address"),
    ("gateways.1.public_key", P1, "gateways[1]", "duplicate public_key"),
    ("gateways", [], "gateways", "needs at least 1 entry"),
    ("clients", ["10.77.0.0/24", "10.77.0.0/24"], "clients[1]", "duplicate network"),
    ("egress", DELETE, "egress", "missing"),
]


BAD = [(gateway_doc, *b) for b in GATEWAY_BAD] + [(exit_doc, *b) for b in EXIT_BAD]


@pytest.mark.parametrize(("good", "field", "value", "path", "reason"), BAD,
                         ids=[f"{b[0].__name__[:-4]}:{b[1]}={b[2]!r}"[:48] for b in BAD])
def test_a_bad_field_is_named(good: Callable[[], dict[str, Any]], field: str, value: Any,
                              path: str, reason: str) -> None:
    with pytest.raises(StateError) as err:
        parse_node(_set(good(), field, value))
    assert err.value.path == path and reason in err.value.reason


def test_too_many_gateways_for_the_marks() -> None:
    doc = exit_doc()
    doc["gateways"] = doc["gateways"] * 8
    with pytest.raises(StateError, match="too many entries"):
        parse_node(doc)


def test_a_shared_exit_gateways_plan() -> None:
    p = plan(parse_node(gateway_doc()))
    assert p.conf is GATEWAY
    assert [d.name for d in p.devices] == ["bg-hk", "bg-hk-x"]
    assert set(p.rules) == {
        NodeRule(4, 5300, dst="10.77.0.2/32", table=52100),
        NodeRule(4, 5303, dst="10.77.0.2/32"),
        NodeRule(4, 5301, iif="bg-hk", table=52101), NodeRule(6, 5301, iif="bg-hk", table=52101),
        NodeRule(4, 5302, iif="bg-hk"), NodeRule(6, 5302, iif="bg-hk"),
    }
    assert all(r.priority in GATEWAY.priorities for r in p.rules)
    assert {t.id for t in p.tables} == {52100, 52101}
    assert ("net/ipv4/conf/bg-hk-x/rp_filter", "2") in p.sysctls
    assert "masquerade" not in p.nft


def test_an_own_exit_gateways_plan() -> None:
    doc = gateway_doc()
    del doc["backbone"]
    doc["egress"] = "eth0"
    p = plan(parse_node(doc))
    assert [d.name for d in p.devices] == ["bg-hk"] and {t.id for t in p.tables} == {52100}
    assert 'iifname "bg-hk" oifname "eth0" masquerade' in p.nft
    assert not any(r.iif for r in p.rules)


def test_an_exits_plan() -> None:
    p = plan(parse_node(exit_doc()))
    assert p.conf is EXIT
    assert all(r.priority in EXIT.priorities for r in p.rules)
    assert {t.id for t in p.tables} == {exit_table(1), exit_table(2)} <= set(EXIT.tables)
    lookup, closed = exit_priorities(2)
    assert NodeRule(4, lookup, fwmark=0x200000, fwmask=0xF00000, table=52112) in p.rules
    assert NodeRule(6, closed, fwmark=0x200000, fwmask=0xF00000) in p.rules
    assert NodeRule(4, 5339, fwmark=0xF00000, fwmask=0xF00000) in p.rules
    assert 'iifname "bx-tyo" ct mark set ct mark & 0xff0fffff | 0x00200000 return' in p.nft
    assert 'iifname != "bx-hk" ip daddr 10.77.101.1 drop' in p.nft
    # A reply whose gateway went quiet for its client goes through one that was heard.
    assert 'iifname "bx-tyo" update @heard4 { ip saddr . 0x00200000 }' in p.nft
    fallback = p.nft.split("chain fallback4 {")[1].split("}")[0].splitlines()
    assert [line.strip() for line in fallback if line.strip()] == [
        "ct original ip saddr . meta mark @heard4 return",
        "meta mark set 0x00100000 ct original ip saddr . meta mark @heard4 return",
        "meta mark set 0x00200000 ct original ip saddr . meta mark @heard4 return",
        "meta mark set ct mark & 0x00f00000"]
    # Replies without a gateway's mark are closed, not sent out of the uplink again.
    assert ("ip daddr { 10.77.0.0/24 } meta mark & 0x00f00000 == 0x00000000 "
            "meta mark set meta mark | 0x00f00000") in p.nft
