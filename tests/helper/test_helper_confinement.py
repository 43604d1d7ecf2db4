"""The helper's confinement, each hole the issue found reproduced against the real
helper: refused with an error that names the field, and the kernel (everything the
helper may touch and everything it may not, WireGuard devices included) unchanged."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.core.helper_client import SyncHelperClient
from app.wire.protocol import MAX_MESSAGE_BYTES
from tests.helper.conftest import (
    Helper,
    all_handshaken,
    braid_leftovers,
    device_configs,
    kernel_dump,
    lab_state,
    ns_run,
    raw_request,
)
from tests.util import wait_until


@pytest.fixture
def owner(helper: Helper) -> SyncHelperClient:
    """One tunnel up (hk), so that "nothing changed" means something."""
    client = helper.client()
    client.apply(lab_state(helper.lab, ("hk",)))
    wait_until(lambda: all_handshaken(client.status(),
                                      [helper.lab.gateways[0].client_interface]), 15)
    return client


def _holes(helper: Helper) -> list[tuple[str, str, Any, str]]:
    """(what, dotted path in lab_state(hk), value, field the error must name)."""
    hk = helper.lab.gateways[0].client_interface
    return [
        ("a network as a tunnel address", "tunnels.0.addresses", ["198.19.0.2/24"],
         "tunnels[0].addresses[0]"),
        ("the ISP link's address", "tunnels.0.addresses", ["198.18.0.2/32"],
         "tunnels[0].addresses[0]"),
        ("loopback address", "tunnels.0.addresses", ["127.0.0.2/32"],
         "tunnels[0].addresses[0]"),
        ("link-local address", "tunnels.0.addresses", ["fe80::2/128"],
         "tunnels[0].addresses[0]"),
        ("scope id smuggling UAPI lines", "tunnels.0.peers.0.endpoint",
         "[fe80::1%3]:1\nremove=true", "tunnels[0].peers[0].endpoint"),
        ("trailing newline in a name", "tunnels.0.name", hk + "\n", "tunnels[0].name"),
        ("a unicode digit as a port", "tunnels.0.peers.0.endpoint", "198.18.0.1:5100²",
         "tunnels[0].peers[0].endpoint"),
        ("src 0.0.0.0/0", "rules.0.src", "0.0.0.0/0", "rules[0].src"),
        ("src ::/0", "rules.0.src", "::/0", "rules[0].src"),
        ("dst 0.0.0.0/0", "rules.0.dst", "0.0.0.0/0", "rules[0].dst"),
        ("fwmark 0 under a mask", "rules.1.fwmark", 0, "rules[1].fwmark"),
        ("the guard's table", "tables.0.id", 52099, "tables[0].id"),
        ("the guard's priority", "rules.0.priority", 5298, "rules[0].priority"),
        ("marking without class default", "marking.classes.0.name", "bulk",
         "marking.classes"),
        ("guard allowing everything", "guard", {"allow": ["0.0.0.0/0"]}, "guard.allow[0]"),
        ("guard allowing loopback", "guard", {"allow": ["127.0.0.0/8"]}, "guard.allow[0]"),
        ("guard via a stranger", "guard", {"allow": [], "via": "br-nothere"}, "guard.via"),
    ]


def _set(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    node: Any = doc
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if p.isdigit() else node[p]
    node[int(parts[-1]) if parts[-1].isdigit() else parts[-1]] = value
    return doc


def test_every_hole_is_refused_and_changes_nothing(helper: Helper, owner: SyncHelperClient,
                                                   ) -> None:
    lab = helper.lab
    base = lab_state(lab, ("hk",))
    hk = lab.gateways[0].client_interface
    before, devices = kernel_dump(helper.ns), device_configs([hk])
    for what, path, value, field in _holes(helper):
        reply = raw_request(helper.socket, json.dumps(
            {"v": 1, "verb": "apply", "state": _set(base, path, value)}).encode() + b"\n")
        assert reply is not None and not reply["ok"], what
        # Refused by the owner's peer or not, it is the state that is wrong.
        assert reply["error"]["code"] in ("bad_state", "not_owner"), (what, reply)
        state = _set(base, path, value)
        with pytest.raises(Exception) as info:
            owner.apply(state)
        text = str(info.value)
        assert f"{field}:" in text, (what, text)
    assert kernel_dump(helper.ns) == before
    assert device_configs([hk]) == devices  # the peer was never removed over UAPI
    assert "remove=true" not in helper.log.read_text()


def test_tunnel_addresses_are_hosts_without_a_prefix_route(helper: Helper) -> None:
    state = lab_state(helper.lab, ("hk",))
    hk = helper.lab.gateways[0].client_interface
    state["tunnels"][0]["addresses"] += ["fd00:19::2/128"]
    client = helper.client()
    client.apply(state)
    addrs = ns_run(helper.ns, "ip", "addr", "show", "dev", hk)
    assert "198.19.0.2/32" in addrs and "fd00:19::2/128" in addrs
    assert addrs.count("noprefixroute") == 2, addrs
    routes6 = ns_run(helper.ns, "ip", "-6", "route", "show", "table", "main")
    assert hk not in routes6, routes6
    # A link-local address the kernel (or anyone) puts on a tunnel is not Braid's: the
    # next apply neither fails with EEXIST nor touches it.
    ns_run(helper.ns, "ip", "-6", "addr", "add", "fe80::99/64", "dev", hk, "nodad")
    state["tunnels"][0]["addresses"] = ["198.19.0.2/32"]
    client.apply(state)
    client.apply(copy.deepcopy(state) | {"marking": None})
    addrs = ns_run(helper.ns, "ip", "addr", "show", "dev", hk)
    assert "fd00:19::2" not in addrs and "fe80::99" in addrs


def test_masquerade_leaves_other_br_links_alone(helper: Helper) -> None:
    """Docker's bridges are br-<id>: a flow leaving through one is not translated."""
    lab = helper.lab
    dk, peer = f"br-{lab.name}-dk", f"pk-{lab.name}"
    ns_run(helper.ns, "ip", "link", "add", dk, "type", "veth", "peer", "name", peer)
    try:
        ns_run(helper.ns, "ip", "addr", "add", "10.77.0.1/24", "dev", dk)
        ns_run(helper.ns, "ip", "link", "set", dk, "up")
        ns_run(helper.ns, "ip", "link", "set", peer, "up")
        state = lab_state(lab, ("hk",), guard={"allow": ["10.77.0.0/24"], "via": None})
        helper.client().apply(state)
        send = ("import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                "s.bind(('198.18.0.2', 40777)); s.sendto(b'x', ('10.77.0.2', 9))")
        ns_run(helper.ns, sys.executable, "-c", send)
        entry = ns_run(helper.ns, "conntrack", "-L", "-p", "udp", "--sport", "40777")
        # Not masqueraded: the reply is still addressed to the source that was sent.
        assert re.search(r"src=10\.77\.0\.2 dst=198\.18\.0\.2 ", entry), entry
    finally:
        ns_run(helper.ns, "ip", "link", "del", dk, check=False)


def test_a_rule_may_select_by_destination(helper: Helper) -> None:
    """dst: probes to one gateway's address through its tunnel, where every tunnel has
    the same inner address (a shared exit)."""
    lab = helper.lab
    state = lab_state(lab, ("hk", "tyo"))
    tyo = lab.gateways[1]
    state["rules"].append({"priority": 5240, "src": None, "dst": f"{tyo.gateway_address}/32",
                           "fwmark": None, "fwmask": None, "action": "lookup",
                           "table": 52002})
    client = helper.client()
    client.apply(lab_state(lab, ("hk", "tyo")))
    count = client.status().rules
    client.apply(state)
    assert f"5240:\tfrom all to {tyo.gateway_address} lookup 52002" in ns_run(
        helper.ns, "ip", "rule")
    route = ns_run(helper.ns, "ip", "route", "get", tyo.gateway_address)
    assert f"dev {tyo.client_interface}" in route, route
    assert client.status().rules == count + 1  # one family: the dst is IPv4
    client.apply(lab_state(lab, ("hk", "tyo")))
    assert "5240:" not in ns_run(helper.ns, "ip", "rule")


def _request(sock: Path, obj: Any) -> dict[str, Any]:
    reply = raw_request(sock, json.dumps(obj).encode() + b"\n")
    assert reply is not None
    return reply


def test_protocol_edges(helper: Helper) -> None:
    sock = helper.socket
    assert _request(sock, {"v": True, "verb": "status"})["error"]["code"] == "bad_version"
    deep = b"[" * 200_000 + b"]" * 200_000 + b"\n"
    reply = raw_request(sock, deep)
    assert reply is not None and reply["error"]["code"] == "bad_json", reply
    nested: Any = {}
    for _ in range(300):
        nested = {"tunnels": [nested]}
    reply = _request(sock, {"v": 1, "verb": "apply", "state": nested})
    assert reply["error"]["code"] == "bad_state", reply
    # The limit is exactly MAX_MESSAGE_BYTES, newline included.
    head, tail = b'{"v": 1, "verb": "status", "pad": "', b'"}\n'
    exact = head + b"x" * (MAX_MESSAGE_BYTES - len(head) - len(tail)) + tail
    assert len(exact) == MAX_MESSAGE_BYTES
    reply = raw_request(sock, exact)
    assert reply is not None and reply["error"]["code"] == "bad_request", reply["error"]
    over = head + b"x" * (MAX_MESSAGE_BYTES + 1 - len(head) - len(tail)) + tail
    reply = raw_request(sock, over)
    assert reply is not None and reply["error"]["code"] == "too_large"


def test_offending_values_are_never_logged_whole(helper: Helper) -> None:
    size = helper.log.stat().st_size
    blob = "v" * 900_000
    for msg in ({"v": blob, "verb": "status"}, {"v": 1, "verb": blob},
                {"v": 1, "verb": "status", blob: 1}):
        reply = _request(helper.socket, msg)
        assert len(json.dumps(reply)) < 2000, reply
    assert helper.client().status() is not None
    assert helper.log.stat().st_size - size < 4000


_SCRIPT = r"""
import asyncio, json, sys
from pathlib import Path
from app.helper import netlink, reconcile
from app.helper.errors import HelperError
from app.wire.state import parse_state

async def main() -> None:
    first, second = json.loads(sys.stdin.readline()), json.loads(sys.stdin.readline())
    r = reconcile.Reconciler("userspace", Path(sys.argv[1]))
    await r.start()
    await r.apply(parse_state(first))
    print("applied", flush=True)
    sys.stdin.readline()  # the test has taken its "before"
    real = netlink.drop_rules
    calls = []

    async def broken(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # the apply; the rollback's goes through
            raise OSError(105, "No buffer space available")  # what pyroute2 may raise
        return await real(*args, **kwargs)

    netlink.drop_rules = broken
    try:
        await r.apply(parse_state(second))
    except HelperError as exc:
        print(json.dumps({"code": str(exc.code), "what": exc.what}), flush=True)
    else:
        print(json.dumps({"code": None}), flush=True)
    netlink.drop_rules = real
    sys.stdin.readline()  # the test has taken its "after"
    await r.down()
    await r.close()

asyncio.run(main())
"""


def unhandled(dump: dict[str, str]) -> dict[str, str]:
    return {k: re.sub(r" # handle \d+", "", v) for k, v in dump.items()}


def test_a_failure_that_is_a_bug_is_rolled_back_too(helper: Helper, tmp_path: Path) -> None:
    """An OSError half-way (after tunnels, routes, rules and nft, before the old rules
    go) leaves nothing of the new state: no tunnel, no wireguard-go holding its key, no
    route, and each device's WireGuard configuration as it was."""
    lab = helper.lab
    helper.stop()  # this test drives a Reconciler of its own in the namespace
    first = lab_state(lab, ("hk",))
    second = lab_state(lab, ("hk", "tyo"))
    peer = second["tunnels"][0]["peers"][0]
    peer["persistent_keepalive"], peer["allowed_ips"] = 7, ["10.0.0.0/8"]
    second["tunnels"][0]["listen_port"] = 40999
    second["rules"] = [r for r in second["rules"] if r["priority"] != 5251]
    child = subprocess.Popen(
        ["ip", "netns", "exec", helper.ns, sys.executable, "-c", _SCRIPT,
         str(tmp_path / "rstate")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    try:
        child.stdin.write(json.dumps(first) + "\n" + json.dumps(second) + "\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "applied"
        names = [g.client_interface for g in lab.gateways]
        before, devices = kernel_dump(helper.ns), device_configs(names)
        child.stdin.write("go\n")
        child.stdin.flush()
        result = json.loads(child.stdout.readline())
        assert result["code"] == "internal", result
        assert "restored" in result["what"]
        # The same tables, rules, routes, links, addresses and nft ruleset (the marking
        # table was loaded again, so only its handles are new).
        assert unhandled(kernel_dump(helper.ns)) == unhandled(before)
        assert device_configs(names) == devices
        child.stdin.write("done\n")
        child.stdin.flush()
        assert child.wait(30) == 0, child.stderr.read() if child.stderr else ""
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        helper.start()
    assert braid_leftovers(helper.ns) == []


def test_the_rollback_of_a_refused_state_restores_each_device(helper: Helper) -> None:
    """Two tunnels on one port: hk's configuration went through before tyo's failed;
    the rollback sets hk's own random port again, which a kernel dump cannot see."""
    client = helper.client()
    client.apply(lab_state(helper.lab, ("hk",)))
    hk = helper.lab.gateways[0].client_interface
    devices = device_configs([hk])
    bad = lab_state(helper.lab, ("hk", "tyo"))
    for t in bad["tunnels"]:
        t["listen_port"] = 40111
    with pytest.raises(Exception, match="refused apply"):
        client.apply(bad)
    assert device_configs([hk]) == devices
