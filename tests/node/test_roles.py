"""The node roles on a real kernel (a namespace per test, real wireguard-go, netlink and
nft): apply, re-apply changes nothing, a smaller state removes the rest, a bad state is
refused with nothing changed, and --down leaves the node as it found it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.node.conftest import Node, dump, key, pub


def gateway(node: Node, *, clients: int = 2, shared: bool = True) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "role": "gateway", "name": "hk",
        "tunnel": {"name": node.iface("bg", "hk"), "private_key": key(), "listen_port": 51820,
                   "addresses": ["10.77.1.1/24"]},
        "clients": [{"public_key": pub(), "allowed_ips": [f"10.77.0.{2 + i}/32"]}
                    for i in range(clients)],
    }
    if shared:
        doc["backbone"] = {"name": node.iface("bg", "x"), "private_key": key(),
                           "exit": {"public_key": pub(), "endpoint": "192.0.2.1:51821"}}
    else:
        doc["egress"] = "up0"
    return doc


def exit_state(node: Node, gateways: tuple[str, ...] = ("hk", "tyo", "sgp")) -> dict[str, Any]:
    return {
        "role": "exit", "name": "la", "egress": "up0", "clients": ["10.77.0.0/24"],
        "gateways": [{"name": g, "mark": i + 1, "public_key": pub(),
                      "tunnel": {"name": node.iface("bx", g), "private_key": key(),
                                 "listen_port": 51821 + i,
                                 "addresses": [f"10.77.{101 + i}.1/32"]}}
                     for i, g in enumerate(gateways)],
    }


def test_a_shared_exit_gateway(node: Node) -> None:
    empty = dump(node)
    state = gateway(node)
    tunnel, backbone = state["tunnel"]["name"], state["backbone"]["name"]
    changes = node.apply(state)
    assert f"{tunnel}: started wireguard-go" in changes and "loaded nft table inet braid_gw" \
        in changes
    held = dump(node)
    rules = held["rules"]
    assert "5300:\tfrom all to 10.77.0.2 lookup 52100" in rules
    assert f"5301:\tfrom all iif {tunnel} lookup 52101" in rules
    assert f"5302:\tfrom all iif {tunnel} unreachable" in rules
    assert f"5302:\tfrom all iif {tunnel} unreachable" in held["rules6"]  # IPv6 closed too
    assert f"default dev {backbone} table 52101" in held["routes"]
    assert f"10.77.0.3 dev {tunnel} table 52100" in held["routes"]
    assert f'iifname "{tunnel}" oifname != "{backbone}" drop' in held["nft"]
    assert "masquerade" not in held["nft"]  # a shared exit's gateway translates nothing
    assert held[f"rp_filter {backbone}"].strip().endswith("= 2")
    assert "net.ipv4.ip_forward = 1" in held["sysctl"]
    assert held["processes"] and len(held["processes"]) == 2

    # Again: nothing to do, and nothing changed, to the byte.
    assert node.apply(state) == []
    assert dump(node) == held

    # A smaller state: one client; the other's peer, route and rules go.
    smaller = copy.deepcopy(state)
    del smaller["clients"][1]
    node.apply(smaller)
    now = dump(node)
    assert "10.77.0.3" not in now["rules"] + now["routes"]
    assert not any("allowed_ip=10.77.0.3/32" in line for line in now[f"wireguard {tunnel}"])
    assert now["processes"] == held["processes"]  # the devices stayed up

    # Its own exit instead: the backbone and its table and rules go, a masquerade comes.
    own = copy.deepcopy(smaller)
    del own["backbone"]
    own["egress"] = "up0"
    node.apply(own)
    now = dump(node)
    assert backbone not in now["links"] and "52101" not in now["rules"] + now["routes"]
    assert f'iifname "{tunnel}" oifname "up0" masquerade' in now["nft"]

    # And down: the node as it was (forwarding stays on: not only ours to turn off).
    done = node.run("down", "gateway")
    assert done.returncode == 0, done.stderr
    after = dump(node)
    assert after["sysctl"].replace("ip_forward = 1", "ip_forward = 0") == empty["sysctl"]
    assert {k: v for k, v in after.items() if k != "sysctl"} == \
        {k: v for k, v in empty.items() if k != "sysctl"}


def test_an_exit(node: Node) -> None:
    empty = dump(node)
    state = exit_state(node)
    node.apply(state)
    held = dump(node)
    links = [g["tunnel"]["name"] for g in state["gateways"]]
    rules = held["rules"]
    assert "5310:\tfrom all fwmark 0x100000/0xf00000 lookup 52111" in rules
    assert "5315:\tfrom all fwmark 0x300000/0xf00000 unreachable" in rules
    assert "5339:\tfrom all fwmark 0xf00000/0xf00000 unreachable" in rules
    assert f"default dev {links[1]} table 52112" in held["routes"]
    nft = held["nft"]
    assert f'iifname "{links[0]}" ct mark set ct mark & 0xff1fffff | 0x00100000 return' in nft
    assert f'iifname != "{links[2]}" ip daddr 10.77.103.1 drop' in nft
    assert "oifname \"up0\" masquerade" in nft
    for link in links:
        assert held[f"rp_filter {link}"].strip().endswith("= 2")
    # Realtime copies meet here (docs/multipath.md): a table of the ip family (nft dup),
    # per gateway a set of packets seen from it and of flows whose copies came through
    # it, replies copied back to it.
    copies = nft.split("table ip braid_exit_copy {")[1]
    for i, link in enumerate(links, 1):
        assert f"set seen_{i} {{" in copies and f"set copy_{i} {{" in copies
        assert f'dup to ip daddr device "{link}"' in copies
    assert copies.count('counter name "copies_removed" drop') == len(links)

    assert node.apply(state) == []
    assert dump(node) == held

    smaller = copy.deepcopy(state)
    del smaller["gateways"][1]  # tyo goes; hk and sgp keep their marks and tables
    changes = node.apply(smaller)
    assert f"{links[1]}: removed" in changes
    now = dump(node)
    assert links[1] not in now["links"] + now["nft"] + now["routes"]
    assert "seen_2" not in now["nft"] and "seen_3" in now["nft"]  # marks stay: sets too
    assert "0x200000" not in now["rules"] and "52112" not in now["routes"]
    assert "0x300000/0xf00000 lookup 52113" in now["rules"]
    assert now[f"wireguard {links[0]}"] == held[f"wireguard {links[0]}"]

    assert node.run("down", "exit").returncode == 0
    after = dump(node)
    assert {k: v for k, v in after.items() if k != "sysctl"} == \
        {k: v for k, v in empty.items() if k != "sysctl"}


BAD: list[tuple[str, Any, str]] = [
    ("tunnel.listen_port", 70000, "tunnel.listen_port: 70000 is out of range 1..65535"),
    ("tunnel.name", "eth0", "tunnel.name: 'eth0' is not a gateway interface name"),
    ("tunnel.name", "bx-nope", "tunnel.name: 'bx-nope' is not a gateway interface name"),
    ("tunnel.mtu", 100, "tunnel.mtu: 100 is out of range 1280..9000"),
    ("tunnel.private_key", "c2hvcnQ=", "tunnel.private_key: decodes to 5 bytes"),
    ("clients", [], "clients: needs at least 1 entry"),
    ("backbone.exit.endpoint", "exit.example:51821", "backbone.exit.endpoint: not an IP:port"),
    ("egress", "up0", "backbone: give exactly one of backbone"),
    ("colour", "blue", "colour: unknown field"),
]


@pytest.mark.parametrize(("field", "value", "says"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_state_is_refused_and_changes_nothing(node: Node, field: str, value: Any,
                                                     says: str) -> None:
    good = gateway(node)
    node.apply(good)
    before = dump(node)
    bad = copy.deepcopy(good)
    *path, last = field.split(".")
    where = bad
    for part in path:
        where = where[part]
    where[last] = value
    done = node.run("apply", stdin=json.dumps(bad))
    assert done.returncode == 2 and says in done.stderr, done.stderr
    assert "nothing was changed" in done.stderr
    assert dump(node) == before


def test_what_is_not_the_roles_is_left_alone(node: Node) -> None:
    # Someone else's rule, route, table and tunnel-looking bridge on the node.
    node.sh("ip", "rule", "add", "priority", "5200", "to", "10.9.0.0/16", "lookup", "100")
    node.sh("ip", "route", "add", "10.9.0.0/16", "dev", "up0", "table", "100")
    node.sh("ip", "link", "add", "bg-mine", "type", "bridge")
    node.sh("nft", "add", "table", "inet", "theirs")
    before = dump(node)
    node.apply(gateway(node))
    assert node.run("down", "gateway").returncode == 0
    after = dump(node)
    assert {k: v for k, v in after.items() if k != "sysctl"} == \
        {k: v for k, v in before.items() if k != "sysctl"}


def test_clients_with_ipv6_addresses(node: Node) -> None:
    gw = gateway(node, clients=1)
    gw["clients"][0]["allowed_ips"].append("2001:db8:77::2/128")
    node.apply(gw)
    held = dump(node)
    backbone = gw["backbone"]["name"]
    assert f"default dev {backbone} table 52101" in held["routes6"]
    assert "5300:\tfrom all to 2001:db8:77::2 lookup 52100" in held["rules6"]
    assert "5303:\tfrom all to 2001:db8:77::2 unreachable" in held["rules6"]
    assert node.sh("sysctl", "-n", "net.ipv6.conf.all.forwarding").strip() == "1"
    assert node.apply(gw) == []
    assert node.run("down", "gateway").returncode == 0

    ex = exit_state(node, ("hk",))
    ex["clients"].append("2001:db8:77::/64")
    node.apply(ex)
    held = dump(node)
    link = ex["gateways"][0]["tunnel"]["name"]
    assert f"default dev {link} table 52111" in held["routes6"]
    assert "ip6 daddr 2001:db8:77::/64 meta mark & 0x00f00000 == 0x00000000" in held["nft"]
    # IPv6 realtime copies meet here too: their own table, and a route for the replies'
    # clones through each link (IPv6's dup needs one: plan.py, _copy_routes).
    copies6 = held["nft"].split("table ip6 braid_exit_copy {")[1]
    assert f'dup to ip6 daddr device "{link}"' in copies6 and "@nh,64,448" in copies6
    assert f"5338:\tfrom all oif {link} lookup 52111" in held["rules6"]
    assert "oif" not in held["rules"]
    assert node.apply(ex) == []
    assert node.run("down", "exit").returncode == 0
    after = dump(node)
    assert "braid_exit_copy" not in after["nft"] and "oif" not in after["rules6"]
