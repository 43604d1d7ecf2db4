"""What a lab is: its names, its address plan (docs/internals.md) and LabInfo.

Everything is named after the lab, so two labs run side by side and a lab can be found
again by name after a crash, without any record of what was built.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from app.core.errors import BraidError
from app.lab import proc
from app.lab.scenario import by_name

LAB_NAME = re.compile(r"^[a-z][a-z0-9]{0,4}$")
RUN_ROOT = Path("/run/braid/lab")
SERVER_ADDRESS = "198.18.200.1"
WG_PORT = 51820  # the gateways' WireGuard port
RELAY_BASE_PORT = 51000  # relay for gateway i listens on wan *:51000+i
PROBE_BASE_PORT = 52000  # relay measurement port: wan *:52000+i -> gw i :52000 (selftest)
CLIENT_WAN = "198.18.0.1"
BASE_WAN = "198.18.1.1"
# A shared exit (docs/internals.md): the exit's link to the wan, its link to the server,
# the relay's backbone ports (gateway i sends to wan *:51100+i, relayed to the exit's
# 51900+i; *:52100+i reaches the exit's 52100+i through the same backbone, for the
# self-test), the client's one inner address (the baseline's beside it) and the exit's
# end of gateway i's backbone: 198.19.(32+i).1, what the client probes path i at.
EXIT_WAN, EXIT_UNDERLAY = "198.18.8.1", "198.18.8.2"
EXIT_UPLINK, EXIT_UPLINK_PEER = "198.18.99.1", "198.18.99.2"
BACKBONE_BASE_PORT = 51100
EXIT_WG_BASE_PORT = 51900
BACKBONE_PROBE_BASE_PORT = 52100
SHARED_CLIENT_SUBNET = "198.19.100.0/24"  # Braid's client .2, the baseline .3
# IPv6 (`--ipv6`), in the benchmarking prefix 2001:2::/48 (RFC 5180), as 198.18/15 is
# IPv4's: the client's ISP link 2001:2::/64 (client ::2, wan ::1), the baseline's
# 2001:2:0:1::/64, the server 2001:2:0:200::1, gateway i's tunnel 2001:2:0:a<i>::/64
# (gateway ::1; separate exits: Braid's client ::2, the baseline ::3), a shared exit's
# clients 2001:2:0:c0::/64 (::2, ::3), separate gateway i's uplink 2001:2:0:b<i>::/64,
# the exit's 2001:2:0:99::/64 (exit ::1, server ::2). The underlay and relay stay IPv4.
SERVER_ADDRESS6 = "2001:2:0:200::1"
SHARED_CLIENT_SUBNET6 = "2001:2:0:c0::/64"
CLIENT_WAN6 = "2001:2::1"
CLIENT_HOST, BASELINE_HOST = 2, 3
SHARED, SEPARATE = "shared", "separate"
EXITS = (SHARED, SEPARATE)


@dataclass(frozen=True)
class LabGateway:
    name: str  # "hk"
    index: int  # i in the address plan
    endpoint: str  # "198.18.0.1:<51000+i>" (the relay, as the client sees it)
    public_key: str  # gateway's WireGuard public key
    client_private_key: str = field(repr=False)  # the client's key for this gateway
    client_address: str  # "198.19.i.2/32"; shared exit: "198.19.100.2/32" on every tunnel
    gateway_address: str  # "198.19.i.1"
    client_interface: str  # "br-<lab>-<gw>"
    # What the client probes this path at, answering through this path alone: the
    # gateway (separate exits), or the exit's end of the gateway's backbone (shared).
    probe_address: str | None = None
    client_address6: str | None = None  # with --ipv6: its IPv6 address on this tunnel

    @property
    def probe(self) -> str:
        return self.probe_address or self.gateway_address


@dataclass(frozen=True)
class LabInfo:
    name: str
    scenario: str
    gateways: tuple[LabGateway, ...]
    server_address: str  # "198.18.200.1"
    runtime_dir: Path  # /run/braid/lab/<lab>
    helper_socket: Path  # runtime_dir / "helper.sock"
    baseline: str | None = None  # gateway the baseline tunnel goes through
    started_at: float = 0.0  # unix time the scenario's timeline counts from
    exit: str = SEPARATE  # "shared": the gateways carry traffic to one exit, the only NAT
    ipv6: bool = False  # the client's ISP, the tunnels and the far side also speak IPv6

    def gateway(self, name: str) -> LabGateway:
        return by_name(self.gateways, name, f"lab {self.name!r}")

    @property
    def relay_socket(self) -> Path:
        return self.runtime_dir / "relay.sock"


# --- names -------------------------------------------------------------------------


def check_lab_name(lab: str) -> str:
    if not LAB_NAME.match(lab):
        raise BraidError(
            f"lab name {lab!r} is not valid",
            "use 1-5 characters: a lowercase letter, then lowercase letters or digits",
        )
    return lab


def netns(lab: str, node: str) -> str:
    """The namespace of ``node`` ("client", "base", "wan", "server", "gw-hk", ...)."""
    return f"braid-{check_lab_name(lab)}-{node}"


def runtime_dir(lab: str) -> Path:
    return RUN_ROOT / check_lab_name(lab)


def gateway_iface(lab: str, gw: str) -> str:
    """The gateway's clients' tunnel (the gateway role's names are bg-*)."""
    return f"bg-{lab}-{gw}"


def backbone_iface(lab: str, gw: str) -> str:
    """The gateway's end of its backbone to the shared exit."""
    return f"bg-{lab}-{gw}-x"


def exit_iface(lab: str, gw: str) -> str:
    """The exit's end of gateway ``gw``'s backbone (the exit role's names are bx-*)."""
    return f"bx-{lab}-{gw}"


def baseline_iface(lab: str) -> str:
    return f"lb-{lab}"


def client_iface(lab: str, gw: str) -> str:
    return f"br-{lab}-{gw}"


NODE_RE = r"client|base|wan|server|exit|gw-[a-z0-9]+"


def lab_names() -> list[str]:
    """Labs that exist in any form: a namespace or a runtime dir (also half-built ones)."""
    found: set[str] = set()
    for ns in proc.namespaces():
        m = re.match(rf"^braid-([a-z][a-z0-9]{{0,4}})-({NODE_RE})$", ns)
        if m:
            found.add(m.group(1))
    with contextlib.suppress(FileNotFoundError):
        found.update(p.name for p in RUN_ROOT.iterdir() if LAB_NAME.match(p.name))
    return sorted(found)


def lab_namespaces(lab: str) -> list[str]:
    prefix = f"braid-{lab}-"
    return [
        ns for ns in proc.namespaces()
        if ns.startswith(prefix) and re.fullmatch(NODE_RE, ns[len(prefix):])
    ]

