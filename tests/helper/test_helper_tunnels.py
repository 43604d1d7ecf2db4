"""braid-helper against the real thing: a lab's namespaces, wireguard-go, rules, nft."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.errors import BraidError
from app.core.helper_client import SyncHelperClient, TunnelStatus
from app.lab.topology import LabInfo
from tests.helper.conftest import (
    Helper,
    all_handshaken,
    braid_leftovers,
    kernel_dump,
    lab_state,
    ns_run,
    ping,
    wireguard_go_in,
)
from tests.util import wait_until

ALL = ("hk", "tyo", "sgp")


def names(lab: LabInfo, gws: tuple[str, ...] = ALL) -> list[str]:
    return [g.client_interface for g in lab.gateways if g.name in gws]


def up(helper: Helper, gws: tuple[str, ...] = ALL, **kw: bool) -> SyncHelperClient:
    """Apply the lab's state and wait for the handshakes; returns the owner's client
    (only it may change the state while it is connected)."""
    client = helper.client()
    client.apply(lab_state(helper.lab, gws, **kw))
    wait_until(
        lambda: all_handshaken(client.status(), names(helper.lab, gws)),
        15,
        message="tunnels never handshook",
    )
    return client


def test_three_tunnels_each_through_its_own_table_then_down_leaves_nothing(
    helper: Helper,
) -> None:
    lab = helper.lab
    owner = up(helper)
    status = helper.client().status()
    assert [t.name for t in status.tunnels] == names(lab)
    assert all(t.up and t.pid for t in status.tunnels)
    assert set(status.tables) == {52001, 52002, 52003}
    for g in lab.gateways:
        src = g.client_address.split("/")[0]
        route = ns_run(helper.ns, "ip", "route", "get", g.gateway_address, "from", src)
        assert f"dev {g.client_interface}" in route and "table 5200" in route, route
        # ICMP through the tunnel: the src rule picks this gateway's table.
        ping(helper.ns, g.gateway_address, src)
    t = helper.client().status().tunnel(lab.gateways[0].client_interface)
    assert t is not None and t.rx_bytes > 0 and t.tx_bytes > 0

    owner.down()
    assert braid_leftovers(helper.ns) == []


def test_unbound_traffic_is_marked_into_the_first_tunnel(helper: Helper) -> None:
    """Class default -> mark 0x01000000 -> table 52001 (hk), masqueraded to hk's address."""
    up(helper)
    ping(helper.ns, helper.lab.server_address)
    hk = helper.client().status().tunnel(helper.lab.gateways[0].client_interface)
    conntrack = ns_run(helper.ns, "conntrack", "-L", "-p", "icmp")
    assert "mark=16777216" in conntrack, conntrack
    assert hk is not None and hk.rx_bytes > 0


def test_applying_the_same_state_twice_changes_nothing(helper: Helper) -> None:
    client = up(helper)
    before_dump = kernel_dump(helper.ns)
    before_procs = wireguard_go_in(helper.ns)
    before = client.status()
    client.apply(lab_state(helper.lab))
    after = client.status()
    assert kernel_dump(helper.ns) == before_dump  # nft handles included: not reloaded
    assert wireguard_go_in(helper.ns) == before_procs
    # No WireGuard session was reset: handshakes only got older.
    for b, a in zip(before.tunnels, after.tunnels, strict=True):
        assert a.pid == b.pid
        assert a.handshake_age_s is not None and b.handshake_age_s is not None
        assert a.handshake_age_s >= b.handshake_age_s


def test_a_smaller_state_removes_exactly_the_rest(helper: Helper) -> None:
    client = up(helper)
    hk = helper.lab.gateways[0].client_interface
    before = client.status().tunnel(hk)
    hk_index = ns_run(helper.ns, "cat", f"/sys/class/net/{hk}/ifindex")
    client.apply(lab_state(helper.lab, ("hk",)))
    after = client.status()
    assert [t.name for t in after.tunnels] == [hk]
    assert list(wireguard_go_in(helper.ns)) == [hk]
    left = braid_leftovers(helper.ns)
    assert not [x for x in left if "tyo" in x or "sgp" in x or "5201" in x or "5202" in x], left
    assert "5200:\tfrom 198.19.0.2 lookup 52001" in ns_run(helper.ns, "ip", "rule")
    assert ns_run(helper.ns, "ip", "route", "show", "table", "52002") == ""
    # hk itself was not touched.
    t = after.tunnel(hk)
    assert before is not None and t is not None and t.pid == before.pid
    assert ns_run(helper.ns, "cat", f"/sys/class/net/{hk}/ifindex") == hk_index
    # And without marking, the nft table goes too.
    client.apply(lab_state(helper.lab, ("hk",), marking=False))
    assert "inet braid" not in ns_run(helper.ns, "nft", "list", "tables")


def test_kill9_then_restart_reports_and_removes_leftovers(helper: Helper) -> None:
    up(helper)
    helper.kill9()
    # Its wireguard-go children outlive it; the links, rules and nft table stay too.
    assert len(wireguard_go_in(helper.ns)) == 3
    assert braid_leftovers(helper.ns)
    helper.start()
    status = helper.client().status()
    assert status.tunnels == ()
    assert any("wireguard-go" in r for r in status.recovered), status.recovered
    # (A stopped wireguard-go takes its link with it.)
    assert any("rule 5200" in r for r in status.recovered), status.recovered
    assert "nft table inet braid" in status.recovered
    assert braid_leftovers(helper.ns) == []
    assert "removed leftovers of an earlier run" in helper.log.read_text()


def test_cleanup_flag_leaves_nothing(helper: Helper) -> None:
    up(helper)
    helper.kill9()
    done = helper.cleanup()
    assert done.returncode == 0, done.stderr
    assert "removed:" in done.stdout and "wireguard-go" in done.stdout
    assert braid_leftovers(helper.ns) == []
    assert not (helper.state_dir / "journal.json").exists()
    for name in names(helper.lab):
        assert not Path(f"/var/run/wireguard/{name}.sock").exists()
    helper.start()  # for the fixture's orderly stop


def test_a_dead_wireguard_go_is_restarted(helper: Helper) -> None:
    client = up(helper)
    victim = helper.lab.gateways[1].client_interface
    old = client.status().tunnel(victim)
    assert old is not None and old.pid is not None
    os.kill(old.pid, signal.SIGKILL)

    def restarted() -> bool:
        t = client.status().tunnel(victim)
        return (
            t is not None and t.restarts == 1 and t.pid != old.pid and t.handshake_age_s is not None
        )

    # A ceiling, not a figure (2 s here when quiet): a handshake lost by a starved relay
    # is retried after WireGuard's REKEY_TIMEOUT, 5 s.
    wait_until(restarted, 30, message="wireguard-go was not restarted and handshaken")
    g = helper.lab.gateways[1]
    src = g.client_address.split("/")[0]
    ping(helper.ns, g.gateway_address, src)
    assert "5201:\tfrom 198.19.1.2 lookup 52002" in ns_run(helper.ns, "ip", "rule")


def test_grace_period_removes_the_state_of_a_client_that_left(lab: LabInfo, tmp_path: Path) -> None:
    h = Helper(lab, tmp_path / "h.sock", tmp_path / "state", tmp_path / "h.log", grace=0.5)
    h.start()
    try:
        owner = h.client()
        owner.apply(lab_state(lab, ("hk",)))
        watcher = h.client()
        assert watcher.status().owner_connected
        owner.close()
        wait_until(lambda: braid_leftovers(h.ns) == [], 15, message="state outlived the grace")
        assert watcher.status().tunnels == ()

        # A persistent state stays when its client leaves: no grace period starts.
        owner = h.client()
        owner.apply(lab_state(lab, ("hk",), persistent=True))
        owner.close()
        wait_until(lambda: not watcher.status().owner_connected, 5)
        st = watcher.status()
        assert st.persistent and st.grace_remaining_s is None and len(st.tunnels) == 1
    finally:
        h.stop()
        h.cleanup()
    assert braid_leftovers(h.ns) == []


def test_no_private_key_in_argv_environment_or_logs(helper: Helper) -> None:
    """Every place a key could land: argv and environments, the helper's log (drift
    repairs, refusals, rollbacks and the guard included), its journal and wireguard-go's
    logs in the state directory, and every reply."""
    lab = helper.lab
    hk = lab.gateways[0].client_interface
    owner = helper.client()
    replies = [owner.apply(lab_state(lab, guard={"allow": ["192.0.2.0/24"], "via": hk}))]
    wait_until(lambda: all_handshaken(owner.status(), names(lab)), 15)
    # A key pasted into the wrong field is refused without being logged.
    for where in ("name", "addresses"):
        misplaced = lab_state(lab, ("hk",))
        misplaced["tunnels"][0][where] = (lab.gateways[0].client_private_key if where == "name"
                                          else [lab.gateways[0].client_private_key])
        with pytest.raises(BraidError, match=rf"tunnels\[0\]\.{where}"):
            owner.apply(misplaced)
    # A device whose configuration drifted is configured again (private key included).
    ns_run(helper.ns, "wg", "set", hk, "peer", lab.gateways[0].public_key, "remove")
    wait_until(lambda: "WireGuard configuration" in helper.log.read_text(), 15,
               message="the removed peer was not noticed")
    wait_until(lambda: all_handshaken(owner.status(), names(lab)), 15)
    # A rollback (two tunnels on one port).
    bad = lab_state(lab, guard={"allow": [], "via": hk})
    for t in bad["tunnels"]:
        t["listen_port"] = 40112
    with pytest.raises(BraidError):
        owner.apply(bad)
    replies.append(owner.request("status"))
    secrets: list[bytes] = []
    for g in helper.lab.gateways:
        secrets.append(g.client_private_key.encode())
        secrets.append(base64.b64decode(g.client_private_key).hex().encode())
    places: list[Path] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            places += [entry / "cmdline", entry / "environ"]
    places += [helper.log, *helper.state_dir.iterdir()]
    assert any(p.name.startswith("wireguard-go-") for p in places)
    assert (helper.state_dir / "journal.json").exists()
    for place in places:
        try:
            data = place.read_bytes()
        except OSError:
            continue
        for s in secrets:
            assert s not in data, f"a private key is readable in {place}"
    for reply in replies:
        text = json.dumps(reply).encode()
        assert not any(s in text for s in secrets), "a private key is in a reply"
    for f in helper.state_dir.iterdir():
        assert f.stat().st_mode & 0o077 == 0, f"{f} is readable by others"


def test_state_file_survives_round_trip_unchanged(helper: Helper) -> None:
    """The status echoes back what was applied (names, tables), not the keys."""
    client = helper.client()
    doc = lab_state(helper.lab, ("hk",))
    result = client.apply(copy.deepcopy(doc))
    assert [t["name"] for t in result["tunnels"]] == [doc["tunnels"][0]["name"]]
    assert doc["tunnels"][0]["private_key"] not in str(result)


def test_a_state_the_kernel_refuses_is_rolled_back(helper: Helper) -> None:
    """Valid fields, impossible together (two tunnels on one UDP port): the helper
    reports the failure and returns to the state it held."""
    client = up(helper, ("hk",))
    before = kernel_dump(helper.ns)
    bad = lab_state(helper.lab, ("hk", "tyo"))
    for t in bad["tunnels"]:
        t["listen_port"] = 40111
    with pytest.raises(BraidError, match="refused apply") as info:
        client.apply(bad)
    assert "br-" in info.value.what  # names the tunnel that failed
    assert kernel_dump(helper.ns) == before
    assert list(wireguard_go_in(helper.ns)) == [helper.lab.gateways[0].client_interface]
    assert [t.name for t in client.status().tunnels] == [helper.lab.gateways[0].client_interface]


def test_other_br_links_are_never_touched(helper: Helper) -> None:
    """Docker names its bridges br-<hex>: a br-* link that is not a tunnel is not Braid's."""
    lab = helper.lab
    mine, peer = f"br-{lab.name}-fx", f"br-{lab.name}-fy"
    ns_run(helper.ns, "ip", "link", "add", mine, "type", "veth", "peer", "name", peer)
    try:
        client = up(helper, ("hk",))
        bad = lab_state(lab, ("hk",))
        bad["tunnels"][0]["name"] = mine
        bad["tables"][0]["routes"][0]["nexthops"][0]["dev"] = mine
        with pytest.raises(BraidError, match="is not a WireGuard tunnel"):
            client.apply(bad)
        client.down()
        helper.kill9()
        assert helper.cleanup().returncode == 0
        links = ns_run(helper.ns, "ip", "-o", "link", "show")
        assert mine in links and peer in links
        helper.start()
    finally:
        ns_run(helper.ns, "ip", "link", "del", mine, check=False)


_SEND = (
    "import socket, sys\n"
    "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
    "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', int(sys.argv[2])))\n"
    "s.sendto(b'braid', (sys.argv[1], 9000))\n"
)


def send_udp(helper: Helper, sport: int) -> None:
    ns_run(helper.ns, sys.executable, "-c", _SEND, helper.lab.server_address, str(sport))


def ct_mark(helper: Helper, sport: int) -> int | None:
    out = ns_run(helper.ns, "conntrack", "-L", "-p", "udp", "--sport", str(sport), check=False)
    m = re.search(r"\bmark=(\d+)", out)
    return int(m.group(1)) if m else None


def wait_tx_grows(helper: Helper, iface: str, before: TunnelStatus | None, message: str) -> None:
    """Until ``iface`` has sent more than it had in ``before``."""
    assert before is not None
    wait_until(
        lambda: (
            (t := helper.client().status().tunnel(iface)) is not None
            and t.tx_bytes > before.tx_bytes
        ),
        10,
        message=message,
    )


def test_flows_keep_their_path_until_their_mark_is_flushed(helper: Helper) -> None:
    """Stickiness and flush_marks: a running flow keeps the mark it started with when
    its class moves; flushing that mark re-classifies it onto the class's new path."""
    hk_mark, tyo_mark = 0x01000000, 0x02000000
    state = lab_state(helper.lab)
    state["rules"] += [
        {"priority": 5252, "src": None, "fwmark": tyo_mark, "fwmask": 0x0F000000,
         "action": "lookup", "table": 52002},
        {"priority": 5253, "src": None, "fwmark": tyo_mark, "fwmask": 0x0F000000,
         "action": "unreachable", "table": None},
    ]  # fmt: skip
    client = helper.client()
    client.apply(state)
    send_udp(helper, 40001)
    assert ct_mark(helper, 40001) == hk_mark

    moved = copy.deepcopy(state)
    moved["marking"]["classes"][0]["mark"] = tyo_mark
    client.apply(moved)
    send_udp(helper, 40001)
    send_udp(helper, 40002)
    assert ct_mark(helper, 40001) == hk_mark  # sticky
    assert ct_mark(helper, 40002) == tyo_mark  # a new flow takes the new path

    tyo = helper.lab.gateways[1].client_interface
    before = client.status().tunnel(tyo)
    moved["marking"]["flush_marks"] = [hk_mark]
    client.apply(moved)
    assert ct_mark(helper, 40001) is None  # flushed
    send_udp(helper, 40001)
    assert ct_mark(helper, 40001) == tyo_mark
    wait_tx_grows(helper, tyo, before, "the re-classified flow did not leave through tyo")


def test_a_class_without_a_path_fails_closed(helper: Helper) -> None:
    """Without its lookup rule, class default's mark meets the unreachable rule: new
    flows fail instead of leaking into the main table; WireGuard's own traffic (bypass
    mark) still flows."""
    client = helper.client()
    state = lab_state(helper.lab)
    state["rules"] = [r for r in state["rules"] if r["priority"] != 5250]
    client.apply(state)
    done = subprocess.run(
        ["ip", "netns", "exec", helper.ns, sys.executable, "-c", _SEND,
         helper.lab.server_address, "40003"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode != 0 and "unreachable" in done.stderr.lower(), done.stderr
    wait_until(
        lambda: all_handshaken(client.status(), names(helper.lab)),
        15,
        message="tunnels must still handshake: their UDP carries the bypass mark",
    )


_PROBE_TABLE = "braidtest_leak"


def test_packets_conntrack_does_not_track_never_leave_through_the_main_table(
    helper: Helper,
) -> None:
    """Untracked (and invalid) packets have no conntrack entry to carry a path mark:
    they must be classified like a new flow, into a tunnel, not left on the main table's
    route out of the client's ISP link. A test table of our own makes some traffic
    untracked and counts what would leak."""
    up(helper)
    dport = 40019
    script = (
        f"table inet {_PROBE_TABLE} {{\n"
        " chain raw { type filter hook output priority raw;\n"
        f"  ip daddr {helper.lab.server_address} udp dport {dport} notrack\n }}\n"
        " chain out { type filter hook postrouting priority 100;\n"
        f'  oifname "wan0" ip daddr {helper.lab.server_address} counter\n }}\n'
        "}\n"
    )
    subprocess.run(["ip", "netns", "exec", helper.ns, "nft", "-f", "-"], input=script,
                   text=True, check=True)  # fmt: skip
    hk = helper.lab.gateways[0].client_interface
    client = helper.client()
    before = client.status().tunnel(hk)
    assert before is not None
    send = _SEND.replace("9000", str(dport))
    for sport in (40020, 40021, 40022):
        ns_run(helper.ns, sys.executable, "-c", send, helper.lab.server_address, str(sport))
    wait_until(
        lambda: (t := client.status().tunnel(hk)) is not None and t.tx_bytes > before.tx_bytes,
        10,
        message="untracked packets did not go through the class's tunnel",
    )
    listing = ns_run(helper.ns, "nft", "list", "chain", "inet", _PROBE_TABLE, "out")
    assert re.search(r"counter packets 0 bytes 0", listing), listing


def ct_sports(helper: Helper, family: str) -> dict[int, int]:
    """UDP conntrack entries of ``family`` in the client namespace: sport -> mark."""
    out = ns_run(helper.ns, "conntrack", "-L", "-f", family, "-p", "udp", check=False)
    found: dict[int, int] = {}
    for line in out.splitlines():
        sport, mark = re.search(r"\bsport=(\d+)", line), re.search(r"\bmark=(\d+)", line)
        if sport and mark:
            found[int(sport.group(1))] = int(mark.group(1))
    return found


def test_a_flush_deletes_exactly_the_entries_with_the_mark(helper: Helper) -> None:
    """flush_marks goes to the kernel as one ctnetlink request: entries whose mark has
    the path mark under Braid's mask go, in both families; every other entry stays."""
    client = helper.client()
    state = lab_state(helper.lab)
    client.apply(state)
    entries = {  # sport: (family, src, dst, mark); inserted, no packet is sent
        41001: ("ipv4", "10.200.0.1", "10.200.0.9", 0x01000000),
        41002: ("ipv4", "10.200.0.1", "10.200.0.9", 0x01000007),  # bits outside the mask
        41003: ("ipv4", "10.200.0.1", "10.200.0.9", 0x02000000),
        41004: ("ipv4", "10.200.0.1", "10.200.0.9", 0),
        41005: ("ipv6", "fd00::1", "fd00::9", 0x01000000),
        41006: ("ipv6", "fd00::1", "fd00::9", 0x02000000),
    }
    for sport, (_, src, dst, mark) in entries.items():
        ns_run(helper.ns, "conntrack", "-I", "-s", src, "-d", dst, "-p", "udp",
               "--sport", str(sport), "--dport", "9", "-t", "120", "-m", str(mark))  # fmt: skip
    assert set(entries) <= set(ct_sports(helper, "ipv4")) | set(ct_sports(helper, "ipv6"))
    flushed = copy.deepcopy(state)
    flushed["marking"]["flush_marks"] = [0x01000000]
    client.apply(flushed)
    left4, left6 = ct_sports(helper, "ipv4"), ct_sports(helper, "ipv6")
    assert {41001, 41002, 41005}.isdisjoint(left4.keys() | left6.keys())
    assert left4[41003] == 0x02000000 and left4[41004] == 0 and left6[41006] == 0x02000000


def test_a_rules_only_switch_changes_that_rule_alone_and_moves_the_class(
    helper: Helper,
) -> None:
    """The fast path: with the same tunnels, an apply that points class default's
    lookup rule at tyo's table replaces that rule (the new one in before the old one
    goes) and touches nothing else; new flows of the class leave through tyo."""
    client = up(helper)
    state = lab_state(helper.lab)
    before = kernel_dump(helper.ns)
    switched = copy.deepcopy(state)
    for rule in switched["rules"]:
        if rule["priority"] == 5250:
            rule["table"] = 52002
    tyo = helper.lab.gateways[1].client_interface
    tx = client.status().tunnel(tyo)
    client.apply(switched)
    after = kernel_dump(helper.ns)
    for key in before:
        if key not in ("rules4", "rules6"):
            assert after[key] == before[key], key  # nft handles included: not reloaded
            continue
        old = [line for line in before[key].splitlines() if not line.startswith("5250:")]
        new = [line for line in after[key].splitlines() if not line.startswith("5250:")]
        assert new == old, key
        moved = [line for line in after[key].splitlines() if line.startswith("5250:")]
        assert len(moved) == 1 and moved[0].strip().endswith("lookup 52002"), moved
    send_udp(helper, 40011)
    wait_tx_grows(helper, tyo, tx, "class default's new flow did not leave through tyo")
    client.apply(state)
    back = kernel_dump(helper.ns)
    assert {k: back[k] for k in ("rules4", "rules6", "routes4", "nft")} == {
        k: before[k] for k in ("rules4", "rules6", "routes4", "nft")
    }
