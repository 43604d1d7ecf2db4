"""From a profile and the engine's decisions to the helper's desired state.

Pure: the same inputs give the same state, so the engine can compare a new plan with
the one the helper holds and send only when something changed.

Layout (ranges from docs/internals.md), for gateway number ``i`` of the profile:
- tunnel ``Gateway.interface`` with the bypass fwmark ``0x0F000000`` on its own UDP
  socket (WireGuard's packets never loop into a tunnel);
- table ``52000 + i``: ``default dev <tunnel>``;
- rule ``5200 + i``: ``from <tunnel address> lookup 52000 + i`` — probes bound to that
  source go through that tunnel whatever the marks say (lower priority number wins);
- path mark ``(i + 1) << 24`` under mask ``0x0F000000``: rule ``5250 + 2i``
  ``fwmark M lookup 52000 + i`` while the path is usable, and always rule ``5251 + 2i``
  ``fwmark M unreachable``. A dead path's lookup rule is withdrawn, so flows stuck to
  it fail fast instead of vanishing into a dead tunnel, and its mark is flushed from
  conntrack when traffic moves, so those flows are re-classified onto the new best.
- the *closed* mark ``0x0E000000`` has only an unreachable rule (priority 5299): a
  class with no usable path carries it — fail closed, nothing reaches the main table.
- ``0x0D000000`` is the bypass class's, the helper's own (its group's traffic, routed to
  main by the helper): so at most 12 paths.

``marking.classes`` gives each steered class the mark of its path (or the closed
mark); nft stamps it on each new flow and keeps it in conntrack (stickiness). Which
class a flow is of (its app's group, the conferencing selectors, its volume past
``bulk_after_mb``) the helper decides in its nft table (docs/classes.md).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from app.core.errors import BraidError
from app.wire.state import (
    BYPASS_MARK,
    MARK_MASK,
    MARK_SHIFT,
    MAX_BULK_AFTER_BYTES,
    MAX_DNS_DOMAINS,
    MAX_DNS_SERVERS,
    MAX_GUARD_ALLOW,
    MPTCP_ID_MIN,
    MPTCP_LIMIT_MAX,
    MPTCP_LOCAL_NET,
    CopyState,
    DesiredState,
    DnsSplit,
    DnsState,
    GuardState,
    MarkClass,
    Marking,
    MptcpEndpoint,
    MptcpState,
    Nexthop,
    PeerState,
    RouteState,
    RuleState,
    TableState,
    TunnelState,
)

TABLE_BASE = 52000
SRC_RULE_BASE = 5200
SPLIT_RULE_BASE = 5230  # 5230 + i: a split gateway's prefixes
MARK_RULE_BASE = 5250
MPTCP_RULE_BASE = 5215  # 5215 + i: path i's MPTCP subflows into its table
CLOSED_MARK = 14 << MARK_SHIFT  # 0x0E000000
CLOSED_RULE_PRIORITY = 5299
ICMP = 1
MAX_PATHS = 12  # marks 1..12; 13 is the bypass class's, 14 the closed mark
MB = 1_000_000


@dataclass(frozen=True)
class PathSpec:
    """One gateway of the profile, resolved and with its keys: everything the plan needs."""

    name: str
    index: int
    interface: str
    private_key: str
    preshared_key: str | None
    addresses: tuple[str, ...]
    mtu: int | None
    listen_port: int | None
    peer_public_key: str
    endpoint: str | None  # IP:port (resolved by the engine)
    allowed_ips: tuple[str, ...]
    persistent_keepalive: int | None
    probe_target: str = ""  # the address the engine pings through this tunnel
    dns: tuple[str, ...] = ()  # the .conf's DNS = (servers and search domains)

    @property
    def table(self) -> int:
        return TABLE_BASE + self.index

    @property
    def mark(self) -> int:
        return path_mark(self.index)

    @property
    def source(self) -> str:
        """The tunnel's first IPv4 address: probes and the src rule use it."""
        return source_address(self.addresses, self.name)

    @property
    def host_addresses(self) -> tuple[str, ...]:
        """The tunnel's own addresses as the helper installs them: one host each."""
        return tuple(str(ipaddress.ip_interface(a).ip) + ("/32" if ipaddress.ip_interface(
            a).version == 4 else "/128") for a in self.addresses)

    @property
    def full(self) -> bool:
        """Whether this gateway takes all IPv4 traffic (AllowedIPs 0.0.0.0/0): only those
        carry the steered classes; the others take just their prefixes (split tunnel)."""
        return "0.0.0.0/0" in self.allowed_ips

    @property
    def dns_servers(self) -> tuple[str, ...]:
        return tuple(d for d in self.dns if is_ip(d))

    @property
    def dns_domains(self) -> tuple[str, ...]:
        return tuple(d for d in self.dns if not is_ip(d))

    @property
    def has_ipv6(self) -> bool:
        return any(ipaddress.ip_interface(a).version == 6 for a in self.addresses)

    def routes(self) -> tuple[str, ...]:
        """What this tunnel's table routes into it: its AllowedIPs (IPv6 ones only when
        the tunnel has an IPv6 address: IPv6 goes through the tunnels where the gateway
        gives it, and is blocked, not leaked, where it does not), then the networks of
        its own addresses."""
        out = [n for n in self.allowed_ips
               if ipaddress.ip_network(n).version == 4 or self.has_ipv6]
        return tuple(dict.fromkeys((*out, *self.subnets)))

    @property
    def split_prefixes(self) -> tuple[str, ...]:
        """A split gateway's prefixes: traffic to them goes to it, whatever its class."""
        if self.full:
            return ()
        return tuple(n for n in self.routes() if ipaddress.ip_network(n).prefixlen > 0)

    @property
    def subnets(self) -> tuple[str, ...]:
        """The networks of addresses written with a prefix (``Address = 10.7.0.5/24``, as
        wg-easy and PiVPN write it): reached through this tunnel, by a route."""
        out = []
        for a in self.addresses:
            iface = ipaddress.ip_interface(a)
            if iface.network.prefixlen < iface.max_prefixlen:
                out.append(str(iface.network))
        return tuple(out)


def is_ip(text: str) -> bool:
    """Whether a gateway's ``DNS =`` entry is a server (else it is a search domain)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def dns_state(paths: Sequence[PathSpec], via: str | None) -> DnsState | None:
    """The gateways' DNS as the helper sets it (docs/helper-protocol.md, "DNS").

    The full gateways' servers and search domains (in profile order, each once) answer
    every name, on ``via``: the tunnel the default class rides (systemd-resolved attaches
    them there). Providers name the same server on every gateway (Mullvad's 10.64.0.1,
    Proton's 10.2.0.1), each answering through its own tunnel, so the servers follow the
    default class like any traffic. A split gateway's servers answer its own domains, on
    its own tunnel (corporate split DNS); its prefixes' rules route them there. Beyond
    the helper's limits (8 servers, 16 domains) the first are kept: glibc asks only 3.
    None: no gateway names DNS, and the system keeps its own."""
    full = [p for p in paths if p.full]
    servers = tuple(dict.fromkeys(s for p in full for s in p.dns_servers))[:MAX_DNS_SERVERS]
    domains = tuple(dict.fromkeys(d for p in full for d in p.dns_domains))[:MAX_DNS_DOMAINS]
    split = tuple(DnsSplit(p.interface, p.dns_servers[:MAX_DNS_SERVERS],
                           p.dns_domains[:MAX_DNS_DOMAINS])
                  for p in paths if not p.full and p.dns_servers)
    if not servers and not split:
        return None
    if not servers:
        return DnsState(split=split)
    return DnsState(servers, domains, via, split)


def outside_dns(guard: GuardState, dns: DnsState | None) -> GuardState:
    """``guard`` with the DNS servers taken out of what it lets out beside the tunnels: a
    server inside the LAN (a corporate 10.0.0.0/8 LAN and Mullvad's 10.64.0.1) is still
    the gateway's, and is asked through the tunnel, never on the LAN."""
    if dns is None:
        return guard
    nets: list[str] = list(guard.allow)
    for server in dns.all_servers():
        nets = [piece for net in nets for piece in _without(net, server)]
    allow = tuple(nets)
    if len(allow) > MAX_GUARD_ALLOW:
        raise BraidError(
            f"the LAN and exclusions, less the gateways' DNS servers inside them, are "
            f"{len(allow)} networks; the kill switch takes {MAX_GUARD_ALLOW}",
            "turn LAN access off, or exclude fewer networks")
    return replace(guard, allow=allow)


def _without(network: str, host: str) -> list[str]:
    """``network`` less the one address ``host`` (itself if it does not hold it)."""
    net, ip = ipaddress.ip_network(network), ipaddress.ip_address(host)
    if net.version != ip.version or ip not in net:
        return [network]
    pieces: list[Any] = list(net.address_exclude(ipaddress.ip_network(ip)))  # type: ignore[arg-type]
    return [str(n) for n in sorted(pieces)]


def path_mark(index: int) -> int:
    return (index + 1) << MARK_SHIFT


def source_address(addresses: Sequence[str], name: str) -> str:
    for text in addresses:
        iface = ipaddress.ip_interface(text)
        if iface.version == 4:
            return str(iface.ip)
    raise BraidError(
        f"gateway {name} has no IPv4 address",
        "give its [Interface] an IPv4 Address (probes and the path's rule need one)",
    )


def check_paths(paths: Sequence[PathSpec], shared_exit: bool = False) -> None:
    if not paths:
        raise BraidError("the profile has no gateways", "import at least one with braid import")
    if len(paths) > MAX_PATHS:
        raise BraidError(
            f"the profile has {len(paths)} gateways; Braid steers at most {MAX_PATHS}",
            "split it into several profiles",
        )
    if sorted(p.index for p in paths) != list(range(len(paths))):
        raise ValueError("path indices must be 0..n-1")
    if shared_exit:
        targets = [p.probe_target for p in paths]
        dup = next((t for t in targets if targets.count(t) > 1), None)
        if dup is not None:
            names = ", ".join(p.name for p in paths if p.probe_target == dup)
            raise BraidError(
                f"gateways {names} of a shared-exit profile would all be probed at {dup}",
                "every tunnel has the same inner address, so each gateway needs its own "
                "probe address: set `probe` per gateway in the profile (docs/profiles.md)")


def build_state(
    paths: Sequence[PathSpec],
    targets: Mapping[str, str | None],
    usable: Collection[str],
    flush: Collection[str] = (),
    flush_closed: bool = False,
    persistent: bool = False,
    shared_exit: bool = False,
    guard: GuardState | None = None,
    *,
    bulk_after_mb: float | None = None,
    dns: DnsState | None = None,
    copies: Sequence[str] | None = None,
    spread: Sequence[str] = (),
    moves: Sequence[tuple[str, str]] = (),
    mptcp: Collection[str] | None = None,
) -> DesiredState:
    """The desired state for ``targets`` (class -> path name, or None: fail closed).

    ``usable``: paths whose lookup rule is installed. ``flush``: paths whose mark is
    flushed from conntrack with this apply; ``flush_closed``: also the closed mark.
    ``shared_exit``: the gateways route the tunnels' one inner address to a shared exit
    that translates it: no client-side masquerade, and each path's probes are routed by
    their destination (its gateway's probe address), since every tunnel has the same
    source address. ``guard``: the kill switch (docs/helper-protocol.md, "Guard").
    ``dns``: the system's DNS while connected (:func:`dns_state`); the guard then lets
    no DNS server out beside the tunnels (:func:`outside_dns`).
    ``bulk_after_mb``: a flow of class default that has moved this many megabytes
    (10^6 bytes, both ways) becomes bulk, when bulk is one of ``targets`` (None: never).
    ``copies``: on a shared exit with realtime steered, the tunnels realtime is copied
    onto (empty: none now, but copies still in flight are removed); None: no copies
    table at all (docs/multipath.md).
    ``spread``: bulk spreading's slots, a path name each (app/core/spread.py); only
    usable paths' slots are kept, and fewer than two paths left mean no spread.
    ``moves``: one-off, like ``flush``: (from, to) path names, one spread bulk flow each
    (spread.py's rebalancing); only pairs within the spread are kept.
    ``mptcp``: the paths (names) that get an MPTCP subflow endpoint now, the healthy
    ones (docs/multipath.md, "MPTCP"); None: no MPTCP state at all.
    """
    check_paths(paths, shared_exit)
    by_name = {p.name: p for p in paths}
    tunnels = tuple(
        TunnelState(
            name=p.interface,
            private_key=p.private_key,
            addresses=p.host_addresses,
            mtu=p.mtu,
            listen_port=p.listen_port,
            fwmark=BYPASS_MARK,
            peers=(PeerState(p.peer_public_key, p.preshared_key, p.endpoint, p.allowed_ips,
                             p.persistent_keepalive),),
        )
        for p in paths
    )
    tables = tuple(
        TableState(p.table, tuple(RouteState(dst, (Nexthop(p.interface, 1),))
                                  for dst in p.routes()))
        for p in paths
    )
    # Each path's probes (ICMP only: a rule of any protocol would also pin every flow
    # that took that tunnel's address as its source to that tunnel, whatever its mark).
    rules: list[RuleState] = [
        RuleState(SRC_RULE_BASE + p.index, None, None, None, "lookup", p.table,
                  dst=f"{p.probe_target}/32", ipproto=ICMP) if shared_exit else
        RuleState(SRC_RULE_BASE + p.index, f"{p.source}/32", None, None, "lookup", p.table,
                  ipproto=ICMP)
        for p in paths
    ]
    for p in paths:
        # A split gateway's prefixes go to it whatever the class (unreachable while it is
        # down: into another tunnel that may not route them is no better).
        for prefix in p.split_prefixes:
            if p.name in usable:
                rules.append(RuleState(SPLIT_RULE_BASE + p.index, None, None, None, "lookup",
                                       p.table, dst=prefix))
            else:
                rules.append(RuleState(SPLIT_RULE_BASE + p.index, None, None, None,
                                       "unreachable", None, dst=prefix))
    for p in paths:
        prio = MARK_RULE_BASE + 2 * p.index
        if p.name in usable:
            rules.append(RuleState(prio, None, p.mark, MARK_MASK, "lookup", p.table))
        rules.append(RuleState(prio + 1, None, p.mark, MARK_MASK, "unreachable", None))
    rules.append(RuleState(CLOSED_RULE_PRIORITY, None, CLOSED_MARK, MARK_MASK, "unreachable",
                           None))
    classes = []
    for cls, target in sorted(targets.items()):
        if target is not None and target not in by_name:
            raise ValueError(f"class {cls}: unknown path {target}")
        mark = CLOSED_MARK if target is None else by_name[target].mark
        classes.append(MarkClass(cls, mark))
    flush_marks = sorted(by_name[n].mark for n in flush)
    if flush_closed:
        flush_marks.append(CLOSED_MARK)
    bulk_after = None if bulk_after_mb is None else min(round(bulk_after_mb * MB),
                                                        MAX_BULK_AFTER_BYTES)
    slots = tuple(by_name[n].mark for n in spread if n in usable)
    if "bulk" not in targets or len(set(slots)) < 2:
        slots = ()
    moved = tuple((by_name[a].mark, by_name[b].mark) for a, b in moves
                  if a != b and {by_name[a].mark, by_name[b].mark} <= set(slots))
    marking: Marking | None = Marking(BYPASS_MARK, tuple(classes), not shared_exit,
                                      tuple(flush_marks), bulk_after_bytes=bulk_after,
                                      spread=slots, moves=moved)
    copy_state = None
    if copies is not None and shared_exit and "realtime" in targets:
        copy_state = CopyState(tuple(copies))
    if not any(p.full for p in paths):
        # Only split gateways: what is not theirs goes outside the tunnels on purpose,
        # so nothing is classified and there is no kill switch to hold it back.
        marking, guard, copy_state = None, None, None
    mptcp_state = None
    if mptcp is not None and marking is not None:
        mptcp_rules, mptcp_state = mptcp_plan(paths, mptcp)
        rules += mptcp_rules
    if guard is not None:
        guard = outside_dns(guard, dns)
    return DesiredState(persistent, tunnels, tables, tuple(rules), marking, guard, dns,
                        copy_state, mptcp_state)


def mptcp_address(index: int) -> str:
    """Path ``index``'s MPTCP subflow address: local to this machine, translated to the
    tunnel's own address as the subflow leaves (the helper's, app/helper/mptcp.py)."""
    return str(ipaddress.ip_network(MPTCP_LOCAL_NET)[index])


def mptcp_plan(paths: Sequence[PathSpec], healthy: Collection[str]
               ) -> tuple[list[RuleState], MptcpState]:
    """A rule per full IPv4 path sending its subflow address into its table (kept while
    the path is down: it routes nothing then), an endpoint per healthy one, and room for
    one subflow per endpoint beside the connection's first."""
    able = [p for p in paths if p.full and any(
        ipaddress.ip_interface(a).version == 4 for a in p.host_addresses)][:MPTCP_LIMIT_MAX]
    rules = [RuleState(MPTCP_RULE_BASE + p.index, f"{mptcp_address(p.index)}/32", None, None,
                       "lookup", p.table) for p in able]
    endpoints = tuple(MptcpEndpoint(MPTCP_ID_MIN + p.index, p.interface,
                                    mptcp_address(p.index))
                      for p in able if p.name in healthy)
    return rules, MptcpState(endpoints, subflows=len(endpoints), add_addr_accepted=0)


def without_flush(state: DesiredState) -> DesiredState:
    """The state minus its one-offs (the flush list, the moves): what to compare plans by."""
    if state.marking is None or not (state.marking.flush_marks or state.marking.moves):
        return state
    return replace(state, marking=replace(state.marking, flush_marks=(), moves=()))
