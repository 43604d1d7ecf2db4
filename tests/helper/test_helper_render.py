"""What the helper sends to wireguard-go and nft, computed from a state (no kernel)."""

from __future__ import annotations

import base64
import dataclasses
import socket
import subprocess

from app.helper import copies, nft, uapi
from app.wire.state import (
    COPY_ROUTE_PRIORITY,
    CopyState,
    MarkClass,
    Marking,
    Nexthop,
    PeerState,
    RouteState,
    TableState,
    TunnelState,
)

K1 = base64.b64encode(bytes(range(32))).decode()
K2 = base64.b64encode(bytes(range(1, 33))).decode()
K3 = base64.b64encode(bytes(range(2, 34))).decode()

PEER = PeerState(K2, None, "198.18.0.1:51000", ("0.0.0.0/0",), 25)
TUNNEL = TunnelState("br-x", K1, ("198.19.0.2/32",), 1380, None, 0x0F000000, (PEER,))


def test_fresh_device_gets_everything_in_hex() -> None:
    lines = uapi.config_lines(None, TUNNEL)
    assert lines[0] == f"private_key={bytes(range(32)).hex()}"
    assert "fwmark=251658240" in lines
    assert not any(line.startswith("listen_port") for line in lines)  # random port
    assert f"public_key={bytes(range(1, 33)).hex()}" in lines
    assert "endpoint=198.18.0.1:51000" in lines
    assert "persistent_keepalive_interval=25" in lines
    assert lines[-2:] == ["replace_allowed_ips=true", "allowed_ip=0.0.0.0/0"]
    assert K1 not in "\n".join(lines)  # hex only, as the UAPI wants


def test_unchanged_tunnel_sends_nothing() -> None:
    assert uapi.config_lines(TUNNEL, TUNNEL) == []


def test_changes_touch_only_what_changed() -> None:
    other = PeerState(K3, K1, None, ("10.0.0.0/8",), None)
    new = dataclasses.replace(TUNNEL, listen_port=51820, peers=(other,))
    lines = uapi.config_lines(TUNNEL, new)
    assert "listen_port=51820" in lines
    assert not any(line.startswith("private_key") for line in lines)
    assert lines[lines.index(f"public_key={bytes(range(1, 33)).hex()}") + 1] == "remove=true"
    assert f"preshared_key={bytes(range(32)).hex()}" in lines


def test_get_reply_is_parsed_without_keeping_the_private_key() -> None:
    reply = (
        f"private_key={'ab' * 32}\nlisten_port=40000\nfwmark=251658240\n"
        f"public_key={bytes(range(1, 33)).hex()}\nendpoint=198.18.0.1:51000\n"
        "last_handshake_time_sec=1700000000\nlast_handshake_time_nsec=500000000\n"
        "rx_bytes=92\ntx_bytes=180\npersistent_keepalive_interval=25\nerrno=0\n\n"
    )
    stats = uapi.parse_get(reply)
    assert stats.listen_port == 40000 and stats.fwmark == 0x0F000000
    (peer,) = stats.peers
    assert peer.public_key == K2 and peer.last_handshake == 1700000000.5
    assert (peer.rx_bytes, peer.tx_bytes) == (92, 180)
    assert "ab" * 32 not in repr(stats)


def test_nft_ruleset_from_marking() -> None:
    marking = Marking(0x0F000000, (MarkClass("default", 0x02000000),), True, ())
    text = nft.render(marking)
    assert text.startswith("table inet braid {")
    assert "type route hook output priority mangle" in text
    assert "meta mark & 0x0f000000 == 0x0f000000 return" in text
    assert "meta mark set 0x02000000 ct mark set ct mark & 0xf0ffffff | 0x02000000" in text
    # No tunnels, nothing to masquerade; with tunnels, exactly theirs (br-* is also
    # Docker's bridges).
    assert "masquerade" not in text and "br-*" not in text
    named = nft.render(marking, ["br-b", "br-a"])
    assert 'oifname { "br-a", "br-b" } masquerade' in named and "br-*" not in named
    assert "masquerade" not in nft.render(dataclasses.replace(marking, masquerade=False),
                                          ["br-a"])
    # Nothing connects in through a tunnel: a flow's first packet from one is dropped.
    assert 'iifname { "br-a", "br-b" } ct state new drop' in named
    assert "chain input" not in text


# ---- classes (docs/classes.md) ----------------------------------------------------------
GROUPS = ({"realtime": "realtime", "bulk": "bulk", "default": "default", "bypass": "bypass"}, 3)
CLASSES = (MarkClass("default", 0x02000000), MarkClass("realtime", 0x01000000),
           MarkClass("bulk", 0x03000000))


def output_chain(text: str) -> list[str]:
    body = text.split("chain output {")[1].split("\n\t}")[0]
    return [line.strip() for line in body.splitlines() if line.strip()]


def test_classification_goes_app_then_selectors_then_volume_then_default() -> None:
    marking = Marking(0x0F000000, CLASSES, True, (), 200_000)
    text = nft.render(marking, ["br-a"], (), GROUPS, ["198.19.0.2/32"])
    chain = output_chain(text)
    where = {k: next(i for i, line in enumerate(chain) if line.startswith(k)) for k in (
        "ct label 113", "ct label 112 ct bytes > 200000", "ct mark & 0x0f000000 != 0x0",
        'socket cgroupv2 level 3 "realtime"', 'socket cgroupv2 level 3 "bypass"',
        "udp dport { 3478-3481, 8801-8810, 19302-19309 }", "ip dscp { ef, af41, af42, af43 }",
        'counter name "default"')}
    # Volume is looked at on every packet of a flow that fell through (before the
    # stickiness that returns), the app's group before the selectors, default last.
    assert list(where.values()) == sorted(where.values()), where
    assert chain[-1] == 'counter name "default" ct label set 112 goto to_default'
    assert 'socket cgroupv2 level 3 "bulk" counter name "app_bulk" goto to_bulk' in chain
    assert "chain to_bypass {\n\t\tmeta mark set 0x0d000000" in text
    assert "chain to_realtime {\n\t\tmeta mark set 0x01000000 ct mark set ct mark & " \
           "0xf0ffffff | 0x01000000" in text
    # Separate exits: a big flow is labelled bulk and keeps its path (no goto).
    vol = next(line for line in chain if "ct bytes" in line)
    assert vol.endswith("ct label set 113")
    shared = nft.render(Marking(0x0F000000, CLASSES, False, (), 200_000), ["br-a"], (), GROUPS)
    vol = next(line for line in output_chain(shared) if "ct bytes" in line)
    assert vol.endswith("ct label set 113 goto to_bulk")
    # A bypass flow routed with a tunnel's address leaves with the uplink's.
    assert "meta mark & 0x0f000000 == 0x0d000000 ip saddr { 198.19.0.2/32 } masquerade" in text


def test_only_what_the_state_steers_is_rendered() -> None:
    alone = Marking(0x0F000000, (MarkClass("default", 0x02000000),), True, (), 200_000)
    text = nft.render(alone, ["br-a"])
    # No realtime: no selectors; no bulk: no volume; no groups: no socket rules, no bypass.
    for absent in ("dport", "dscp", "ct bytes", "ct label set 11", "cgroupv2", "0x0d000000"):
        assert absent not in text.replace(f"ct label set {nft.LABEL_PICKED_UP} accept", ""), \
            absent
    grouped = nft.render(alone, ["br-a"], (), GROUPS)
    # A group of a class the state does not steer sends its flows to default's path.
    assert 'socket cgroupv2 level 3 "realtime" counter name "app_realtime" goto to_default' \
        in grouped


def test_the_guard_lets_the_bypass_class_out_only_while_its_group_exists() -> None:
    from app.helper import guard
    from app.wire.state import GuardState

    g = GuardState(("192.168.1.0/24",), "br-x")
    assert "0x0d000000" not in guard.render(g, [TUNNEL])
    assert "meta mark & 0x0f000000 == 0x0d000000 accept" in guard.render(
        g, [TUNNEL], bypass_class=True)


def test_a_switch_changes_only_the_marks_chains() -> None:
    before = Marking(0x0F000000, CLASSES, True, (), 200_000)
    moved = Marking(0x0F000000, (MarkClass("default", 0x01000000), *CLASSES[1:]), True, (),
                    200_000)
    old = nft.render(before, ["br-a"], (), GROUPS)
    new = nft.render(moved, ["br-a"], (), GROUPS)
    assert nft.mark_update(old, new) == (
        "flush chain inet braid to_default\nadd rule inet braid to_default meta mark set "
        "0x01000000 ct mark set ct mark & 0xf0ffffff | 0x01000000\n")
    # Anything else that differs (a rule, a class more): the table loads whole.
    assert nft.mark_update(old, nft.render(before, ["br-a", "br-b"], (), GROUPS)) is None
    alone = Marking(0x0F000000, CLASSES[:1], True, (), 200_000)
    assert nft.mark_update(old, nft.render(alone, ["br-a"], (), GROUPS)) is None


SPREAD = (0x02000000, 0x03000000, 0x02000000)


def test_spread_bulk_deals_new_flows_by_slot_onto_path_chains() -> None:
    marking = Marking(0x0F000000, CLASSES, False, (), 200_000, spread=SPREAD)
    text = nft.render(marking, ["br-a"], (), GROUPS)
    assert ("\tchain to_bulk {\n\t\tnumgen inc mod 3 vmap { 0 : goto spread_2, "
            "1 : goto spread_3, 2 : goto spread_2 }\n\t}") in text
    for n in (2, 3):
        m = f"0x0{n}000000"
        # Labelled, but for MPTCP's first subflows: a rebalancing move may take it.
        mark = f"meta mark set {m} ct mark set ct mark & 0xf0ffffff | {m}"
        assert (f"\tchain spread_{n} {{\n\t\ttcp option mptcp exists {mark} return\n"
                f"\t\t{mark} ct label set {nft.LABEL_SPREAD}\n\t}}") in text
    # Stickiness comes before the classes: only a flow's first packet reaches the numgen
    # (the volume rule, before it, sends a flow to bulk once: it labels it as it does).
    out = output_chain(text)
    sticky = out.index("ct mark & 0x0f000000 != 0x00000000 meta mark set ct mark & "
                       "0x0f000000 return")
    assert sticky < next(i for i, line in enumerate(out)
                         if line.startswith("socket") and "goto to_bulk" in line)
    # Without a bulk class there is nothing to spread: the slots are not rendered.
    alone = Marking(0x0F000000, CLASSES[:2], False, (), None, spread=SPREAD)
    assert "spread_" not in nft.render(alone, ["br-a"], (), GROUPS)


def test_reweighting_replaces_only_bulks_rule() -> None:
    old = nft.render(Marking(0x0F000000, CLASSES, False, (), None, spread=SPREAD), ["br-a"])
    reweighted = (0x02000000, 0x03000000, 0x03000000)
    new = nft.render(Marking(0x0F000000, CLASSES, False, (), None, spread=reweighted),
                     ["br-a"])
    assert nft.mark_update(old, new) == (
        "flush chain inet braid to_bulk\nadd rule inet braid to_bulk numgen inc mod 3 vmap "
        "{ 0 : goto spread_2, 1 : goto spread_3, 2 : goto spread_3 }\n")
    # Another set of paths (a chain more or less): the table loads whole.
    other = nft.render(Marking(0x0F000000, CLASSES, False, (), None,
                               spread=(0x01000000, 0x03000000)), ["br-a"])
    assert nft.mark_update(old, other) is None


def test_a_flow_met_mid_stream_from_a_tunnel_is_taken_and_its_answers_classified() -> None:
    """After a flush, a download's next segment is new to conntrack: taken (labelled),
    not dropped; the client's answers, which conntrack then calls replies, are
    classified. Any other new packet from a tunnel is dropped, as before."""
    text = nft.render(Marking(0x0F000000, CLASSES, False, (), None), ["br-a", "br-b"])
    taken = (f'iifname {{ "br-a", "br-b" }} ct state new tcp flags ack / syn,ack '
             f"ct label set {nft.LABEL_PICKED_UP} accept")
    assert taken.replace("ack / syn,ack", "& (syn | ack) == ack") in text
    assert 'iifname { "br-a", "br-b" } ct state new drop' in text
    out = output_chain(text)
    reply = out.index(f"ct direction reply ct label != {nft.LABEL_PICKED_UP} return")
    assert reply < next(i for i, line in enumerate(out) if "ct mark &" in line)


# ---- realtime copies (docs/multipath.md) ------------------------------------------------
def nft_accepts(text: str, devices: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    """``nft --check`` of ``text`` in a network namespace of its own (never the host's),
    with ``devices`` as tun devices (what tunnels are): ``dup ... device`` needs them to exist."""
    script = "".join(f"ip tuntap add {d} mode tun && " for d in devices) + "nft -c -f -"
    return subprocess.run(["unshare", "--net", "sh", "-c", script], input=text, text=True,
                          capture_output=True, check=False)


def test_the_copy_table_copies_realtime_udp_onto_the_copy_tunnel_and_removes_copies() -> None:
    text = copies.render(CopyState(("br-b",)), ["br-b", "br-a"])
    assert text.startswith("table ip braid_copy {")
    rt = "ct label 114 meta l4proto udp ip hdrlength 5"
    # Upstream: what leaves through any tunnel is copied, unless it is routed into the
    # copy tunnel already; the clone names its tunnel (gone tunnel: no route, dropped).
    assert f'oifname {{ "br-a", "br-b" }} {rt} jump to_copies' in text
    assert 'chain to_copies {\n\t\toifname != "br-b" counter name "copies" dup to ip daddr ' \
           'device "br-b"\n\t}' in text
    # Downstream: one rule checks and inserts, so two copies on two CPUs cannot both pass.
    (dedup,) = [line.strip() for line in text.splitlines() if "@seen" in line]
    assert dedup == (f'iifname {{ "br-a", "br-b" }} {rt} add @seen {{ @nh,96,320 limit rate '
                     'over 1/minute burst 1 packets } counter name "copies_removed" drop')
    assert "type filter hook prerouting priority -160" in text
    assert "timeout 1s" in text and "flags dynamic,timeout" in text
    done = nft_accepts(text, ("br-a", "br-b"))
    assert done.returncode == 0, done.stderr


def test_copies_off_still_remove_copies_in_flight_and_no_tunnels_copy_nothing() -> None:
    off = copies.render(CopyState(()), ["br-a", "br-b"])
    assert "dup" not in off and "chain to_copies {\n\t\treturn\n\t}" in off
    assert "add @seen" in off  # the exit copies downstream for a second more
    bare = copies.render(CopyState(()), [])
    assert "jump" not in bare and "prerouting" not in bare and "oifname" not in bare
    two = copies.render(CopyState(("br-c", "br-b")), ["br-a", "br-b", "br-c"])
    assert [line.strip().split()[2] for line in two.splitlines() if " dup " in line] == \
        ['"br-b"', '"br-c"']
    for text in (off, bare, two):
        done = nft_accepts(text, ("br-a", "br-b", "br-c"))
        assert done.returncode == 0, (text, done.stderr)


def test_the_ipv6_copy_table_is_the_same_with_ipv6_headers_and_its_clones_get_a_route() -> None:
    text = copies.render(CopyState(("br-b",)), ["br-b", "br-a"], 6)
    assert text.startswith("table ip6 braid_copy {")
    rt = "ct label 114 ip6 nexthdr udp"  # no extension header: the key's offsets hold
    assert f'oifname {{ "br-a", "br-b" }} {rt} jump to_copies' in text
    assert 'dup to ip6 daddr device "br-b"' in text
    assert "add @seen { @nh,64,448 limit rate over 1/minute burst 1 packets }" in text
    done = nft_accepts(text, ("br-a", "br-b"))
    assert done.returncode == 0, done.stderr
    tables = (TableState(52000, (RouteState("0.0.0.0/0", (Nexthop("br-a"),)),
                                 RouteState("::/0", (Nexthop("br-a"),)))),
              TableState(52001, (RouteState("::/0", (Nexthop("br-b"),)),)))
    (rule,) = copies.route_rules(CopyState(("br-b",)), tables, (socket.AF_INET, socket.AF_INET6))
    assert (rule.family, rule.priority, rule.oif, rule.table) == (
        socket.AF_INET6, COPY_ROUTE_PRIORITY, "br-b", 52001)
    assert rule.describe() == "ipv6 rule 5297 oif br-b lookup 52001"
    # No IPv6 in the kernel: no rule; a copy tunnel no table routes into: none (its
    # clones find no route and are dropped, as with the tunnel gone).
    assert copies.route_rules(CopyState(("br-b",)), tables, (socket.AF_INET,)) == []
    assert copies.route_rules(CopyState(("br-c",)), tables, (socket.AF_INET6,)) == []
