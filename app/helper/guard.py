"""The guard (kill switch): two layers rendered from a GuardState, each enough alone.

- **nft**: table ``inet braid_guard``, filter chains on output and forward with policy
  drop; only loopback, this state's tunnels (by exact name), the tunnels' own UDP to
  their peers' endpoints (bypass mark), the allowed destinations, the bypass class's
  packets (while its group exists), DHCP and ICMPv6 neighbour/router discovery get out.
  Gone after ``nft flush ruleset``.
- **routing**: rules at 5290 (allowed destinations and DHCP to main), 5291 (the bypass
  class, to main: app/helper/classes.py, while the class groups exist) and 5298 (all but
  the bypass mark to table 52099), where 52099 holds ``default dev <via>`` (IPv4) and an
  ``unreachable default`` (both families). Survives any nft change; an unreachable rule
  at 5298 would not do: a TCP connect() routes its first packet before nft marks it,
  and would fail even with the tunnels up, so the route sends it into ``via`` instead.

Both are pure functions of the state; reconcile.py puts them in place and keeps them.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from app.helper import nft
from app.helper.netlink import (
    FR_ACT_TO_TBL,
    MAIN_TABLE,
    RTN_UNREACHABLE,
    KernelRoute,
    KernelRule,
    RouteKey,
    default_metric,
)
from app.wire.state import (
    BYPASS_CLASS_MARK,
    BYPASS_MARK,
    GUARD_ALLOW_PRIORITY,
    GUARD_BLOCK_PRIORITY,
    GUARD_TABLE,
    MARK_MASK,
    NFT_FAMILY,
    NFT_GUARD_TABLE,
    GuardState,
    TunnelState,
)

TABLE = f"{NFT_FAMILY} {NFT_GUARD_TABLE}"
COUNTER = "dropped"
DNS_COUNTER = "dns_blocked"  # queries to resolvers outside the tunnels (with DNS set)
UNREACHABLE_METRIC = 0xFFFFFFFF  # below everything: what is left when via's route is gone
UDP = 17
# DHCP clients renew by unicast to their server: to main, so the uplink keeps its lease.
DHCP = ((socket.AF_INET, 68, 67), (socket.AF_INET6, 546, 547))
_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}


def rules(guard: GuardState, families: Iterable[int]) -> list[KernelRule]:
    """The routing layer's rules, for the ``families`` the kernel has."""
    fams = tuple(families)
    out = [
        KernelRule(_FAMILY[ipaddress.ip_network(net).version], GUARD_ALLOW_PRIORITY, None,
                   None, None, FR_ACT_TO_TBL, MAIN_TABLE, dst=net)
        for net in guard.allow
    ]
    out = [r for r in out if r.family in fams]
    out += [KernelRule(fam, GUARD_ALLOW_PRIORITY, None, None, None, FR_ACT_TO_TBL, MAIN_TABLE,
                       ip_proto=UDP, sport=sport, dport=dport)
            for fam, sport, dport in DHCP if fam in fams]
    out += [KernelRule(fam, GUARD_BLOCK_PRIORITY, None, BYPASS_MARK, MARK_MASK, FR_ACT_TO_TBL,
                       GUARD_TABLE, invert=True) for fam in fams]
    return out


def routes(guard: GuardState, links: dict[str, int], families: Iterable[int],
           tunnels: Iterable[TunnelState] = ()) -> dict[RouteKey, KernelRoute]:
    """Table 52099: the unreachable defaults and, while ``via``'s link is there, the
    IPv4 default into it (its absence is no error: the tunnel may be restarting), and the
    IPv6 one too where ``via`` has an IPv6 address (IPv6 through the tunnel)."""
    fams = list(families)
    out = [KernelRoute(fam, GUARD_TABLE, "0.0.0.0/0" if fam == socket.AF_INET else "::/0",
                       (), RTN_UNREACHABLE, UNREACHABLE_METRIC) for fam in fams]
    if guard.via is not None and guard.via in links:
        out.append(KernelRoute(socket.AF_INET, GUARD_TABLE, "0.0.0.0/0",
                               ((links[guard.via], 1),)))
        via = next((t for t in tunnels if t.name == guard.via), None)
        if socket.AF_INET6 in fams and via is not None and any(
                ipaddress.ip_interface(a).version == 6 for a in via.addresses):
            # The metric IPv6 gives a route that names none: as the kernel reports it,
            # or every drift check sees this route differ, and its repair removes it.
            out.append(KernelRoute(socket.AF_INET6, GUARD_TABLE, "::/0",
                                   ((links[guard.via], 1),),
                                   metric=default_metric(socket.AF_INET6)))
    return {r.key: r for r in out}


def _endpoints(tunnels: Iterable[TunnelState]) -> tuple[list[str], list[str]]:
    v4: set[str] = set()
    v6: set[str] = set()
    for t in tunnels:
        for p in t.peers:
            if p.endpoint is None:
                continue
            host, _, port = p.endpoint.rpartition(":")
            ip = ipaddress.ip_address(host.strip("[]"))
            (v4 if ip.version == 4 else v6).add(f"{ip} . {int(port)}")
    return sorted(v4), sorted(v6)


def render(guard: GuardState, tunnels: Iterable[TunnelState],
           bypass_class: bool = False, dns: bool = False) -> str:
    """The nft layer. Rules whose set would be empty are left out (nft refuses an
    empty anonymous set); what they would accept is then dropped, as it should be.
    ``bypass_class``: the class groups exist, so the bypass class's packets (marked by the
    marking table, which only a group's sockets get) are let out too.
    ``dns`` (the state sets the system's DNS): DNS, DNS over TLS and over QUIC to any
    resolver outside the tunnels is dropped too, the LAN's included: the tunnels'
    servers answer, and a LAN router's resolver is the ISP's (app/helper/dns.py)."""
    tunnels = list(tunnels)
    mask = f"{MARK_MASK:#010x}"
    bypass = f"meta mark & {mask} == {BYPASS_MARK:#010x}"
    ep4, ep6 = _endpoints(tunnels)
    names = [t.name for t in tunnels]
    through = [f"oifname {nft.names(names)} accept"] if names else []
    allow = nft.allow_rules(guard.allow, "accept")
    dns_block = [f'meta l4proto {{ tcp, udp }} th dport {{ 53, 853 }} counter name '
                 f'"{DNS_COUNTER}" drop'] if dns else []
    output = [
        "type filter hook output priority filter; policy drop;",
        'oifname "lo" accept',
        *through,
        *([f"{bypass} ip daddr . udp dport {nft.element_set(ep4)} accept"] if ep4 else []),
        *([f"{bypass} ip6 daddr . udp dport {nft.element_set(ep6)} accept"] if ep6 else []),
        *dns_block,
        *allow,
        # The bypass class: outside the tunnels on purpose (docs/classes.md).
        *([f"meta mark & {mask} == {BYPASS_CLASS_MARK:#010x} accept"] if bypass_class
          else []),
        # The uplink stays alive: its DHCP lease and IPv6 neighbour/router discovery
        # (MLD reports: switches that snoop drop ND to groups nobody joined).
        "meta nfproto ipv4 udp sport 68 udp dport 67 accept",
        "meta nfproto ipv6 udp sport 546 udp dport 547 accept",
        "icmpv6 type { nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, "
        "mld2-listener-report } accept",
        f'counter name "{COUNTER}" drop',
    ]
    forward = [
        "type filter hook forward priority filter; policy drop;",
        *through,
        *dns_block,
        *allow,
        f'counter name "{COUNTER}" drop',
    ]
    out = [f"table {TABLE} {{", f"\tcounter {COUNTER} {{", "\t}"]
    if dns:
        out += [f"\tcounter {DNS_COUNTER} {{", "\t}"]
    for chain, body in (("output", output), ("forward", forward)):
        out += [f"\tchain {chain} {{", *(f"\t\t{line}" for line in body), "\t}"]
    out.append("}")
    return "\n".join(out) + "\n"
