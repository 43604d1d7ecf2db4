"""The description of one's nodes: what `braid gateway init` writes reads back the same,
every node's state follows from it (and is one a node accepts), errors name the field."""

from __future__ import annotations

import tomllib

import pytest

from app.node import describe, keys
from app.node.describe import load_nodes, new_nodes
from app.node.errors import NodeError
from app.node.state import ExitState, GatewayState

GATEWAYS = [("hk", "198.51.100.11"), ("tyo", "198.51.100.12:4500"), ("sgp", "198.51.100.13")]


def test_a_shared_exit_with_three_gateways() -> None:
    nodes = new_nodes(GATEWAYS, ["laptop", "phone"], exit_node=("la", "203.0.113.10"))
    assert nodes.node_names == ["la", "hk", "tyo", "sgp"]
    assert load_nodes(describe.dump_nodes(nodes), "again") == nodes
    exit_state = describe.node_state(nodes, "la")
    assert isinstance(exit_state, ExitState) and exit_state.clients == ("10.77.0.0/24",)
    hk = describe.node_state(nodes, "hk")
    assert isinstance(hk, GatewayState) and hk.backbone is not None
    # The gateway's peer on its backbone is the exit's end of that link, at its port...
    link = next(g for g in exit_state.links if g.name == "hk")
    assert hk.backbone.peers[0].public_key == keys.pubkey(link.tunnel.private_key)
    assert hk.backbone.peers[0].endpoint == f"203.0.113.10:{link.tunnel.listen_port}"
    # ...and the exit's peer on that link is the gateway's backbone key.
    assert link.tunnel.peers[0].public_key == keys.pubkey(hk.backbone.private_key)
    # One address per client, the same on every gateway; marks one per gateway.
    assert {c.allowed_ips for c in hk.tunnel.peers} == {("10.77.0.2/32",), ("10.77.0.3/32",)}
    assert [g.mark for g in exit_state.links] == [1, 2, 3]
    tunnels = describe.client_tunnels(nodes, "phone")
    assert {t.address for t in tunnels} == {"10.77.0.3/32"}
    assert [t.probe for t in tunnels] == ["10.77.101.1", "10.77.102.1", "10.77.103.1"]
    assert [t.endpoint for t in tunnels][1] == "198.51.100.12:4500"
    assert tunnels[0].peer_public_key == keys.pubkey(nodes.gateway("hk").private_key)
    assert "private_key" not in repr(nodes.gateway("hk")) + repr(tunnels[0])


def test_separate_exits() -> None:
    nodes = new_nodes(GATEWAYS[:2], ["laptop"], exit_node=None, egress="ens3")
    assert nodes.exit is None and nodes.node_names == ["hk", "tyo"]
    hk = describe.node_state(nodes, "hk")
    assert isinstance(hk, GatewayState) and hk.egress == "ens3" and hk.backbone is None
    tunnels = describe.client_tunnels(nodes, "laptop")
    assert [t.address for t in tunnels] == ["10.77.1.2/32", "10.77.2.2/32"]
    assert [t.probe for t in tunnels] == ["10.77.1.1", "10.77.2.1"]
    with pytest.raises(NodeError, match="has no exit"):
        describe.exit_state(nodes)


def _broken(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize(("old", "new", "says"), [
    ('topology = "shared"', 'topology = "mesh"', "topology: must be one of: shared, separate"),
    ("mark = 2", "mark = 1", "gateway[1]: duplicate backbone.mark"),
    ('exit_port = 51822', 'exit_port = 99999', "gateway[1].backbone.exit_port: 99999 is out"),
    ('interface = "bg-tyo"', 'interface = "br-tyo"', "gateway[1].interface: 'br-tyo' is not a"),
    ('host = 2', 'host = 1', "client[0].host: 1 is out of range 2..65534"),
    ('egress = "eth0"', 'egress = "bx-la"', "exit.egress: 'bx-la' is one of Braid's own"),
    ("format = 1", "format = 2", "format: must be 1"),
])
def test_a_broken_description_names_the_field(old: str, new: str, says: str) -> None:
    text = describe.dump_nodes(new_nodes(GATEWAYS, ["laptop"],
                                         exit_node=("la", "203.0.113.10")))
    with pytest.raises(NodeError) as err:
        load_nodes(_broken(text, old, new), "nodes.toml")
    assert err.value.what.startswith("nodes.toml: ") and says in err.value.what, err.value.what


def test_the_file_says_what_it_holds() -> None:
    text = describe.dump_nodes(new_nodes(GATEWAYS[:1], ["laptop"],
                                         exit_node=("la", "203.0.113.10")))
    assert text.startswith("# Braid nodes") and "keep it mode 0600" in text
    doc = tomllib.loads(text)
    assert doc["topology"] == "shared" and doc["gateway"][0]["backbone"]["mark"] == 1


def test_names_too_long_for_their_tunnels_are_refused() -> None:
    with pytest.raises(NodeError, match="too long for its tunnel names"):
        new_nodes([("singapore01", "198.51.100.1")], ["laptop"], exit_node=("la", "1.2.3.4"))
