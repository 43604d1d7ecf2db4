"""Realtime copies on the client (docs/multipath.md): the table ``ip braid_copy``.

Upstream, every UDP packet of a realtime flow (conntrack label bit LABEL_REALTIME, set
where the flow got its class in ``inet braid``) is duplicated by nft ``dup`` onto each
copy tunnel it is not routed into anyway; the exit keeps the first copy of each packet
and drops the rest. Downstream, the exit sends its own copies back the same way, and
this table keeps the first and drops the rest before the app sees them.

``dup`` exists only in ip/ip6 tables, hence a table of its own (IPv4: the tunnels'
inner traffic Braid copies is IPv4; IPv6 realtime flows are not copied). A clone is
untracked and skips NAT, which a shared exit needs none of on the client. It names its
tunnel as the device: with that tunnel gone the kernel finds no route for the clone
and drops it, so a copy never leaves outside a tunnel (and the guard's table lets out
only what goes into one).

Rendered from validated state only: tunnel names matched Braid's interface pattern.
"""

from __future__ import annotations

from collections.abc import Iterable

from app.helper.nft import LABEL_REALTIME, names
from app.wire.state import NFT_COPY_FAMILY, NFT_COPY_TABLE, CopyState

TABLE = f"{NFT_COPY_FAMILY} {NFT_COPY_TABLE}"
# What identifies one packet for as long as its copies are on their way: addresses, the
# UDP header (ports, length, checksum: a hash of the whole datagram) and the first 24
# bytes of payload (RTP's sequence number and timestamp sit in its first 8), as one raw
# 40-byte field of a 20-byte IPv4 header on. One field and not a concatenation: nft 1.0.6
# aborts while listing a set whose concatenated key has a raw part in it (it took a lab
# helper down while measuring, docs/multipath.md).
PACKET_KEY = "@nh,96,320"
SEEN_TIMEOUT = "1s"  # longer than any two paths' one-way delays differ; short: memory
SET_SIZE = 65535
COUNTER_COPIES, COUNTER_REMOVED = "copies", "copies_removed"
COPY_CHAIN = "to_copies"


def render(copies: CopyState, tunnels: Iterable[str]) -> str:
    """The table for ``copies``; ``tunnels``: this state's tunnels (where copies of what
    comes back arrive)."""
    tunnels = sorted(tunnels)
    realtime_udp = f"ct label {LABEL_REALTIME} meta l4proto udp ip hdrlength 5"
    out = [
        f"table {TABLE} {{",
        f"\tcounter {COUNTER_COPIES} {{", "\t}",
        f"\tcounter {COUNTER_REMOVED} {{", "\t}",
        "\tset seen {",
        f"\t\ttypeof {PACKET_KEY}",
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
    out += [f'\t\toifname != "{t}" counter name "{COUNTER_COPIES}" dup to ip daddr device '
            f'"{t}"' for t in sorted(copies.tunnels)] or ["\t\treturn"]
    out += ["\t}"]
    if tunnels:
        out += [
            "\tchain prerouting {",
            # Before conntrack's helpers and NAT care, after conntrack (the label).
            "\t\ttype filter hook prerouting priority -160; policy accept;",
            # One rule, so that two copies on two CPUs cannot both pass: the element's
            # limit lets one packet through and the second is over it.
            f"\t\tiifname {names(tunnels)} {realtime_udp} add @seen {{ {PACKET_KEY} "
            f'limit rate over 1/minute burst 1 packets }} counter name "{COUNTER_REMOVED}" drop',
            "\t}",
        ]
    out.append("}")
    return "\n".join(line for line in out if line) + "\n"
