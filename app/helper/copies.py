"""Realtime copies on the client (docs/multipath.md): the table ``ip braid_copy``.

Upstream, every UDP packet of a realtime flow (conntrack label bit LABEL_REALTIME, set
where the flow got its class in ``inet braid``) is duplicated by nft ``dup`` onto each
copy tunnel it is not routed into anyway; the exit keeps the first copy of each packet
and drops the rest. Downstream, the exit sends its own copies back the same way, and
this table keeps the first and drops the rest before the app sees them.

``dup`` exists only in ip/ip6 tables, hence a table of its own in each family, the
same rules with each family's header (IPv6: only a UDP header right after the fixed
one, no extension headers, so that the key's offsets hold). A clone is untracked and
skips NAT, which a shared exit needs none of on the client. It names its tunnel as the
device: with that tunnel gone the kernel finds no route for the clone and drops it, so
a copy never leaves outside a tunnel (and the guard's table lets out only what goes
into one). IPv6 looks the clone's route up with mark 0 and that device, which only a
route through the device satisfies: hence :func:`route_rules`, one rule per copy tunnel
to the table whose default goes through it (IPv4 takes the destination as on-link).

Rendered from validated state only: tunnel names matched Braid's interface pattern.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass

from app.helper.netlink import FR_ACT_TO_TBL, KernelRule
from app.helper.nft import LABEL_REALTIME, names
from app.wire.state import (
    COPY_ROUTE_PRIORITY,
    NFT_COPY_FAMILY,
    NFT_COPY_FAMILY6,
    NFT_COPY_TABLE,
    CopyState,
    TableState,
)

TABLE = f"{NFT_COPY_FAMILY} {NFT_COPY_TABLE}"
TABLE6 = f"{NFT_COPY_FAMILY6} {NFT_COPY_TABLE}"
# What identifies one packet for as long as its copies are on their way: addresses, the
# UDP header (ports, length, checksum: a hash of the whole datagram) and the first 24
# bytes of payload (RTP's sequence number and timestamp sit in its first 8), as one raw
# 40-byte field of a 20-byte IPv4 header on. One field and not a concatenation: nft 1.0.6
# aborts while listing a set whose concatenated key has a raw part in it (it took a lab
# helper down while measuring, docs/multipath.md).
PACKET_KEY = "@nh,96,320"
# IPv6: both addresses, the UDP header and the first 16 bytes of payload (56 bytes,
# from the source address at byte 8; a key holds 64 at most).
PACKET_KEY6 = "@nh,64,448"
SEEN_TIMEOUT = "1s"  # longer than any two paths' one-way delays differ; short: memory
SET_SIZE = 65535
COUNTER_COPIES, COUNTER_REMOVED = "copies", "copies_removed"
COPY_CHAIN = "to_copies"


@dataclass(frozen=True)
class _Family:
    table: str
    key: str
    udp: str  # a UDP packet whose header is where the key expects it
    daddr: str


_FAMILIES = {4: _Family(TABLE, PACKET_KEY, "meta l4proto udp ip hdrlength 5", "ip daddr"),
             6: _Family(TABLE6, PACKET_KEY6, "ip6 nexthdr udp", "ip6 daddr")}


def render(copies: CopyState, tunnels: Iterable[str], version: int = 4) -> str:
    """The table for ``copies`` in IP ``version``'s family; ``tunnels``: this state's
    tunnels (where copies of what comes back arrive)."""
    fam = _FAMILIES[version]
    tunnels = sorted(tunnels)
    realtime_udp = f"ct label {LABEL_REALTIME} {fam.udp}"
    out = [
        f"table {fam.table} {{",
        f"\tcounter {COUNTER_COPIES} {{", "\t}",
        f"\tcounter {COUNTER_REMOVED} {{", "\t}",
        "\tset seen {",
        f"\t\ttypeof {fam.key}",
        f"\t\tsize {SET_SIZE}",
        "\t\tflags dynamic,timeout",
        f"\t\ttimeout {SEEN_TIMEOUT}",
        "\t}",
        "\tchain postrouting {",
        "\t\ttype filter hook postrouting priority filter; policy accept;",
        f"\t\toifname {names(tunnels)} {realtime_udp} jump {COPY_CHAIN}" if tunnels else "",
        "\t}",
        f"\tchain {COPY_CHAIN} {{",
    ]
    # One rule in the chain (a `to_` chain: the helper replaces just it, as it does a
    # class's mark, when only the copies' path changes; the set of packets seen and the
    # counters carry on). Several copy tunnels: a rule each, and a whole load.
    out += [f'\t\toifname != "{t}" counter name "{COUNTER_COPIES}" dup to {fam.daddr} device '
            f'"{t}"' for t in sorted(copies.tunnels)] or ["\t\treturn"]
    out += ["\t}"]
    if tunnels:
        out += [
            "\tchain prerouting {",
            # Before conntrack's helpers and NAT care, after conntrack (the label).
            "\t\ttype filter hook prerouting priority -160; policy accept;",
            # One rule, so that two copies on two CPUs cannot both pass: the element's
            # limit lets one packet through and the second is over it.
            f"\t\tiifname {names(tunnels)} {realtime_udp} add @seen {{ {fam.key} "
            f'limit rate over 1/minute burst 1 packets }} counter name "{COUNTER_REMOVED}" drop',
            "\t}",
        ]
    out.append("}")
    return "\n".join(line for line in out if line) + "\n"


def route_rules(copies: CopyState, tables: Iterable[TableState],
                families: Iterable[int]) -> list[KernelRule]:
    """IPv6's clone routes: for each copy tunnel, ``oif <it> lookup <the table whose
    default goes through it>`` (the state's tables name their device). None for a
    tunnel no table routes into: its clones find no route and are dropped, as with the
    tunnel gone."""
    if socket.AF_INET6 not in families:
        return []
    into = {hop.dev: t.id for t in tables for r in t.routes if r.dst == "::/0"
            for hop in r.nexthops}
    return [KernelRule(socket.AF_INET6, COPY_ROUTE_PRIORITY, None, None, None, FR_ACT_TO_TBL,
                       into[t], oif=t) for t in sorted(copies.tunnels) if t in into]
