"""What each node role may touch: its interface names, routing tables, rule priorities,
conntrack/packet mark bits and nft table (docs/gateways.md, "Confinement").

The roles' ranges sit next to the client helper's (tables 52000-52099, priorities
5200-5299, marks under 0x0F000000, interfaces br-*, table inet braid) and do not overlap
them or each other, so a gateway and an exit can share one host (an exit that also
terminates a client's tunnel) and a node can also run the Braid client.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

ROLE_GATEWAY, ROLE_EXIT = "gateway", "exit"
ROLES = (ROLE_GATEWAY, ROLE_EXIT)


@dataclass(frozen=True)
class Confinement:
    role: str
    iface: re.Pattern[str]  # the role's WireGuard interfaces
    iface_hint: str  # the pattern in words, for errors
    tables: range
    priorities: range
    nft_table: str  # "inet <name>"
    # A second table, for what only an ip-family table can do (nft `dup`): the exit's
    # realtime copies (docs/multipath.md). None: the role has none.
    copy_table: str | None = None
    copy_table6: str | None = None

    def owns_iface(self, name: str) -> bool:
        return bool(self.iface.match(name))


GATEWAY = Confinement(
    role=ROLE_GATEWAY,
    iface=re.compile(r"\Abg-[a-z0-9][a-z0-9-]{0,11}\Z"),
    iface_hint="bg- then 1-12 of a-z 0-9 -, starting with a letter or digit",
    tables=range(52100, 52110),
    priorities=range(5300, 5310),
    nft_table="inet braid_gw",
)
EXIT = Confinement(
    role=ROLE_EXIT,
    iface=re.compile(r"\Abx-[a-z0-9][a-z0-9-]{0,11}\Z"),
    iface_hint="bx- then 1-12 of a-z 0-9 -, starting with a letter or digit",
    tables=range(52110, 52125),
    priorities=range(5310, 5340),
    nft_table="inet braid_exit",
    copy_table="ip braid_exit_copy",
    copy_table6="ip6 braid_exit_copy",
)
CONFINEMENTS = {c.role: c for c in (GATEWAY, EXIT)}

# The gateway's two tables: towards its clients (through its tunnel) and towards the exit.
GATEWAY_TABLE_CLIENTS, GATEWAY_TABLE_EXIT = 52100, 52101
# To a client: its tunnel (5300), else nowhere (5303: the tunnel is gone). From a client:
# the exit (5301), else nowhere (5302: the backbone is gone).
GATEWAY_PRIO_CLIENTS, GATEWAY_PRIO_EXIT, GATEWAY_PRIO_CLOSED = 5300, 5301, 5302
GATEWAY_PRIO_CLIENTS_CLOSED = 5303

# The exit marks each flow with the gateway its last packet came in from: a small
# number (1-14) under this mask, in the conntrack mark and, on replies, the packet mark.
EXIT_MARK_MASK = 0x00F00000
EXIT_MARK_SHIFT = 20
EXIT_MARK_MIN, EXIT_MARK_MAX = 1, 14


def exit_mark(number: int) -> int:
    return number << EXIT_MARK_SHIFT


def exit_table(number: int) -> int:
    """The table replies of gateway ``number``'s flows are routed by."""
    return EXIT.tables.start + number


def exit_priorities(number: int) -> tuple[int, int]:
    """(lookup, unreachable) for gateway ``number``: the second closes its mark when the
    gateway's link is gone, so its replies do not fall through to the main table."""
    base = EXIT.priorities.start + 2 * (number - 1)
    return base, base + 1


# Traffic to a client that no gateway mark routes (its flow predates the exit, or its
# gateway was removed) gets this mark, and the last of the exit's rules sends it nowhere,
# not back out of the uplink. A mark, not a `to <client>` rule: the reverse-path check
# looks the client's address up too, and must find the node's own default route.
EXIT_MARK_CLOSED = 0xF << EXIT_MARK_SHIFT
EXIT_PRIO_CLOSED = EXIT.priorities.stop - 1
# IPv6 realtime copies' routes (plan.py, _copy_routes): oif <link> lookup <its table>.
EXIT_PRIO_COPY_ROUTES = EXIT.priorities.stop - 2


# A Linux interface name the roles refer to but never create or change (the node's
# uplink): IFNAMSIZ, and only characters that are safe inside an nft string.
UPLINK_RE = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,14}\Z")
