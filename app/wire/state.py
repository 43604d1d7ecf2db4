"""The desired state the helper reconciles the kernel to, and its validation.

Everything a caller sends is parsed here into frozen dataclasses before the helper
touches anything, so a bad field is refused with an error naming its path
(``tunnels[1].peers[0].endpoint: not an IP:port``) and nothing changes.

This module is pure (no I/O, no root): the engine imports it to build states, the
helper to check them; neither imports the other. The confinement constants below are
the only place the helper's reach is defined; they mirror docs/internals.md. Field
rules shared with `braid import` (names, keys, MTU, ports) live in fields.py.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import asdict, dataclass
from typing import Any

from app.wire import doc as d
from app.wire import fields
from app.wire.doc import StateError
from app.wire.fields import IFACE_RE, MTU_MAX, MTU_MIN

# ---- confinement (docs/internals.md) ----------------------------------------------
TABLE_MIN, TABLE_MAX = 52000, 52099
PRIORITY_MIN, PRIORITY_MAX = 5200, 5299
MARK_MASK = 0x0F000000
MARK_SHIFT = 24
BYPASS_MARK = 0x0F000000
# The bypass *class*'s mark (processes in the bypass group, outside the tunnels on
# purpose): the helper's own, set by its marking table and routed by its rule
# BYPASS_CLASS_PRIORITY to main. Not the tunnels' bypass mark above.
BYPASS_CLASS_MARK = 0x0D000000
# Path marks 0x01000000 … 0x0C000000 and the closed mark 0x0E000000: one per route target
# (table); 0x0D000000 is the bypass class's.
PATH_MARKS: frozenset[int] = frozenset(
    n << MARK_SHIFT for n in range(1, 15)) - {BYPASS_CLASS_MARK}
CLOSED_MARK = 14 << MARK_SHIFT  # 0x0E000000: only an unreachable rule (app/core/plan.py)
NFT_FAMILY, NFT_TABLE = "inet", "braid"
RULE_IPPROTOS = (1, 58)  # ICMP, ICMPv6: a rule may narrow to the engine's probes

# The guard (kill switch) owns a table, a range of rule priorities and an nft table of its
# own; a caller's tables and rules may not use them (docs/helper-protocol.md, "Guard").
GUARD_TABLE = 52099
GUARD_PRIORITY_MIN, GUARD_PRIORITY_MAX = 5290, 5298
GUARD_ALLOW_PRIORITY = 5290  # to <allowed network> lookup main
GUARD_BLOCK_PRIORITY = 5298  # not fwmark bypass lookup GUARD_TABLE
# In the same reserved range, the helper's rule for the bypass class: fwmark
# BYPASS_CLASS_MARK lookup main (before 5298, which would send it into the guard's table).
BYPASS_CLASS_PRIORITY = 5291
# And realtime copies' IPv6 routes: oif <copy tunnel> lookup <its table>. IPv6's `dup`
# looks its clone's route up with mark 0 and that tunnel as the device, which only a
# route through the device satisfies (IPv4 takes the destination as on-link instead).
COPY_ROUTE_PRIORITY = 5297
NFT_GUARD_TABLE = "braid_guard"
# Realtime copies (docs/multipath.md): nft `dup` exists only in ip/ip6 tables, so the
# copies and their removal live in a table of their own next to `inet braid`.
NFT_COPY_FAMILY, NFT_COPY_TABLE = "ip", "braid_copy"
NFT_COPY_FAMILY6 = "ip6"  # the same table for IPv6's realtime flows
MAX_GUARD_ALLOW = 64
# MPTCP (docs/multipath.md, "MPTCP"): each tunnel's subflow endpoint is a local-only
# address of Braid's from this block (IETF protocol assignments, never routed), put on
# the tunnel with link scope (never chosen as an ordinary flow's source) and translated
# to the tunnel's inner address as its subflow leaves. The kernel refuses two endpoints
# with one address, and a shared exit gives every tunnel the same one. Braid's endpoints
# have ids in MPTCP_ID_MIN..MAX; the kernel holds at most 8 of its limits each.
MPTCP_LOCAL_NET = "192.0.0.224/27"
MPTCP_ID_MIN, MPTCP_ID_MAX = 200, 231
MPTCP_LIMIT_MAX = 8
NFT_MPTCP_FAMILY, NFT_MPTCP_TABLE = "ip", "braid_mptcp"
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))

# Size limits: generous for any real profile, small enough that a state is cheap
# to validate and reconcile.
MAX_TUNNELS = 32
MAX_PEERS = 16
MAX_ADDRESSES = 16
MAX_ALLOWED_IPS = 256
MAX_TABLES = TABLE_MAX - TABLE_MIN + 1
MAX_ROUTES = 64
MAX_NEXTHOPS = 16
MAX_RULES = 256
MAX_CLASSES = 14
# A flow classified as default that has moved this many bytes (both ways, counted by
# conntrack) becomes bulk; at most 1 PiB, 0: at once.
MAX_BULK_AFTER_BYTES = 1 << 50
DEFAULT_CLASS = "default"
WEIGHT_MIN, WEIGHT_MAX = 1, 256
MAX_SPREAD_SLOTS = 64  # bulk spreading's slots (the engine sends 20)
DEFAULT_MTU = 1420  # wireguard-go's and wg-quick's default
# DNS (docs/helper-protocol.md, "DNS"): resolv.conf's glibc reads 3 servers, resolved more.
MAX_DNS_SERVERS = 8
MAX_DNS_DOMAINS = 16


# ---- the state ---------------------------------------------------------------------
@dataclass(frozen=True)
class PeerState:
    public_key: str
    preshared_key: str | None
    endpoint: str | None  # "IP:port" or "[IPv6]:port", an IP literal
    allowed_ips: tuple[str, ...]  # normalised networks
    persistent_keepalive: int | None


@dataclass(frozen=True)
class TunnelState:
    name: str
    private_key: str
    addresses: tuple[str, ...]  # interfaces, "198.19.0.2/32"
    mtu: int | None
    listen_port: int | None
    fwmark: int | None
    peers: tuple[PeerState, ...]

    @property
    def effective_mtu(self) -> int:
        return self.mtu if self.mtu is not None else DEFAULT_MTU


@dataclass(frozen=True)
class Nexthop:
    dev: str
    weight: int = 1


@dataclass(frozen=True)
class RouteState:
    dst: str  # normalised network
    nexthops: tuple[Nexthop, ...]


@dataclass(frozen=True)
class TableState:
    id: int
    routes: tuple[RouteState, ...]


@dataclass(frozen=True)
class RuleState:
    priority: int
    src: str | None
    fwmark: int | None
    fwmask: int | None
    action: str  # "lookup" | "unreachable"
    table: int | None
    dst: str | None = None  # a destination network (probes to one gateway address)
    # Only packets of this IP protocol: ICMP (1) or ICMPv6 (58), so that a path's probe
    # rule steers its probes and not every flow that happens to have its source address.
    ipproto: int | None = None

    def families(self) -> tuple[int, ...]:
        """IP versions the rule is installed for: a rule without an address selector
        covers both, so a fail-closed mark rule also closes IPv6."""
        for net in (self.src, self.dst):
            if net is not None:
                return (ipaddress.ip_network(net).version,)
        return (4, 6)


@dataclass(frozen=True)
class MarkClass:
    name: str
    mark: int


@dataclass(frozen=True)
class Marking:
    bypass_mark: int
    classes: tuple[MarkClass, ...]
    masquerade: bool
    flush_marks: tuple[int, ...]
    # A default flow past this many bytes becomes bulk (None: never). docs/classes.md.
    bulk_after_bytes: int | None = None
    # Bulk spreading (docs/multipath.md): each new bulk flow takes the next slot's path
    # mark (nft numgen inc) and keeps it; () : bulk takes its class's one mark.
    spread: tuple[int, ...] = ()
    # One-off, like flush_marks (only the apply that brings it): per (from, to) pair of
    # spread marks, one running bulk TCP flow spread onto ``from`` takes ``to``
    # (conntrack's mark changed in place: on a shared exit nothing of the flow breaks).
    moves: tuple[tuple[int, int], ...] = ()

    def mark_of(self, name: str) -> int | None:
        return next((c.mark for c in self.classes if c.name == name), None)


@dataclass(frozen=True)
class GuardState:
    """The kill switch: nothing leaves outside the tunnels but ``allow``'s destinations
    (and what keeps the uplink alive). ``via``: the tunnel unmarked traffic is routed
    into before nft marks it (a TCP connect's first route lookup), or None."""

    allow: tuple[str, ...] = ()  # strict networks, IPv4 and IPv6
    via: str | None = None

    def held(self) -> GuardState:
        """The guard as it stays when the tunnels go (client left, helper restarted)."""
        return GuardState(self.allow, None)


@dataclass(frozen=True)
class DnsSplit:
    """A split gateway's DNS: its ``domains`` are answered by its ``servers``, on its
    tunnel ``via`` (systemd-resolved's routing domains; resolv.conf cannot route)."""

    via: str
    servers: tuple[str, ...]
    domains: tuple[str, ...] = ()


@dataclass(frozen=True)
class DnsState:
    """The system's DNS while connected: ``servers`` and search ``domains`` for every
    name, reached through the tunnels; ``via``: the tunnel they belong to (where
    systemd-resolved attaches them; it follows the default class). ``split``: split
    gateways' own servers for their own domains. A state with ``dns`` also blocks DNS
    to any resolver outside the tunnels while its guard holds."""

    servers: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    via: str | None = None
    split: tuple[DnsSplit, ...] = ()

    def held(self) -> DnsState:
        """The DNS as it stays when the tunnels go but the guard holds: the same
        servers (unreachable: nothing asks anyone else), on no link."""
        return DnsState(self.servers, self.domains, None, ())

    def all_servers(self) -> tuple[str, ...]:
        """Every server, the default ones first (what a resolv.conf can list)."""
        return tuple(dict.fromkeys([*self.servers, *(s for p in self.split for s in p.servers)]))

    def all_domains(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys([*self.domains, *(d for p in self.split for d in p.domains)]))


@dataclass(frozen=True)
class CopyState:
    """Realtime copies (docs/multipath.md): every UDP packet of a realtime flow is also
    sent through each of ``tunnels`` (unless it is routed there anyway), and copies of
    what comes back are removed before the app sees them. ``tunnels`` empty: no copies
    are made, but copies still in flight (the exit copies downstream for a second after
    the client stopped) are removed."""

    tunnels: tuple[str, ...] = ()


@dataclass(frozen=True)
class MptcpEndpoint:
    """One tunnel's MPTCP subflow endpoint: ``address`` (in MPTCP_LOCAL_NET) is put on
    ``dev`` and translated to the tunnel's IPv4 address as it leaves; the kernel opens a
    subflow of every MPTCP connection from it, bound to ``dev``."""

    id: int
    dev: str
    address: str  # a host address, no prefix: "192.0.0.224"


@dataclass(frozen=True)
class MptcpState:
    """Kernel MPTCP (docs/multipath.md, "MPTCP"): an endpoint per healthy tunnel, and the
    path manager's limits: extra subflows per connection, addresses a server may
    announce that are taken up."""

    endpoints: tuple[MptcpEndpoint, ...] = ()
    subflows: int = 0
    add_addr_accepted: int = 0


@dataclass(frozen=True)
class DesiredState:
    persistent: bool = False
    tunnels: tuple[TunnelState, ...] = ()
    tables: tuple[TableState, ...] = ()
    rules: tuple[RuleState, ...] = ()
    marking: Marking | None = None
    guard: GuardState | None = None
    dns: DnsState | None = None
    copies: CopyState | None = None  # only with a marking that has realtime
    mptcp: MptcpState | None = None

    def to_json(self) -> dict[str, Any]:
        """The wire form (the inverse of :func:`parse_state`). Without DNS the field is
        left out: such a state reads as it did before ``dns`` existed."""
        doc: dict[str, Any] = asdict(self)
        if doc["dns"] is None:
            del doc["dns"]
        if doc["copies"] is None:
            # Left out, not null: a helper from before copies refuses unknown fields.
            del doc["copies"]
        if doc["marking"] is not None and not doc["marking"]["spread"]:
            del doc["marking"]["spread"]  # the same: a state without spreading reads as before
        if doc["marking"] is not None and not doc["marking"]["moves"]:
            del doc["marking"]["moves"]  # likewise
        if doc["mptcp"] is None:
            del doc["mptcp"]  # likewise
        return d.plain(doc)  # type: ignore[no-any-return]

    def dumps(self) -> str:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)

    def redacted(self) -> dict[str, Any]:
        """The wire form with keys replaced, for logs and status."""
        doc = self.to_json()
        for t in doc["tunnels"]:
            t["private_key"] = "(hidden)"
            for p in t["peers"]:
                if p["preshared_key"] is not None:
                    p["preshared_key"] = "(hidden)"
        return doc


EMPTY_STATE = DesiredState()


# ---- validation --------------------------------------------------------------------
def parse_state(doc: Any) -> DesiredState:
    """Validate a decoded JSON document field by field; raise StateError on the first
    wrong field."""
    top = d.obj(doc, "", {"persistent", "tunnels", "tables", "rules", "marking", "guard",
                          "dns", "copies", "mptcp"})
    persistent = d.boolean(top.get("persistent", False), "persistent")
    tunnels = d.each(top.get("tunnels", []), "tunnels", MAX_TUNNELS, _tunnel)
    d.unique([t.name for t in tunnels], "tunnels", "name")
    names = {t.name for t in tunnels}
    tables = d.each(top.get("tables", []), "tables", MAX_TABLES,
                    lambda t, path: _table(t, path, names))
    d.unique([t.id for t in tables], "tables", "id")
    table_ids = {t.id for t in tables}
    rules = d.each(top.get("rules", []), "rules", MAX_RULES,
                   lambda r, path: _rule(r, path, table_ids))
    d.unique(rules, "rules", "rule (same priority, selectors and action)")
    marking_doc = top.get("marking")
    marking = None if marking_doc is None else _marking(marking_doc, "marking")
    if marking is not None:
        _spread_routed(marking, rules, "marking.spread")
    guard_doc = top.get("guard")
    guard = None if guard_doc is None else parse_guard(guard_doc, "guard", names)
    dns_doc = top.get("dns")
    dns = None if dns_doc is None else parse_dns(dns_doc, "dns", names, guard)
    copies_doc = top.get("copies")
    copies = None if copies_doc is None else _copies(copies_doc, "copies", names, marking)
    mptcp_doc = top.get("mptcp")
    mptcp = None if mptcp_doc is None else _mptcp(mptcp_doc, "mptcp", tunnels, tables, rules)
    return DesiredState(persistent, tunnels, tables, rules, marking, guard, dns, copies, mptcp)


def parse_dns(doc: Any, path: str, tunnels: set[str],
              guard: GuardState | None = None) -> DnsState:
    """The DNS fields: addresses and names only (the helper renders every line it
    writes), servers on a tunnel of this state, none the guard would let out beside the
    tunnels (a server in ``guard.allow`` would be asked on the LAN, in plaintext)."""
    obj = d.obj(doc, path, {"servers", "domains", "via", "split"})
    servers = _dns_servers(obj.get("servers", []), f"{path}.servers", min_len=0)
    domains = _dns_domains(obj.get("domains", []), f"{path}.domains")
    via = _dns_via(obj.get("via"), f"{path}.via", tunnels)
    if servers and via is None:
        raise StateError(f"{path}.via", "missing: the servers are reached through a tunnel; "
                                        "name it")
    if domains and not servers:
        raise StateError(f"{path}.domains", "need servers (a search domain is answered by "
                                            "this entry's servers)")
    split = d.each(obj.get("split", []), f"{path}.split", MAX_TUNNELS,
                   lambda e, p: _dns_split(e, p, tunnels))
    d.unique([s.via for s in split], f"{path}.split", "via")
    if via is not None and via in {s.via for s in split}:
        i = [s.via for s in split].index(via)
        raise StateError(f"{path}.split[{i}].via", f"{via!r} is already dns.via (one tunnel "
                                                    "has one DNS)")
    if not servers and not split:
        raise StateError(path, "names no servers (send null to leave the system's DNS as "
                               "it is)")
    dns = DnsState(servers, domains, via, split)
    if guard is not None:
        _dns_inside_tunnels(dns, path, guard)
    return dns


def _dns_servers(value: Any, path: str, *, min_len: int) -> tuple[str, ...]:
    servers = d.each(value, path, MAX_DNS_SERVERS,
                     lambda v, p: d.field(v, p, fields.check_dns_server), min_len=min_len)
    d.unique(list(servers), path, "server")
    return servers


def _dns_domains(value: Any, path: str) -> tuple[str, ...]:
    domains = d.each(value, path, MAX_DNS_DOMAINS,
                     lambda v, p: d.field(v, p, fields.check_search_domain, 254))
    d.unique(list(domains), path, "domain")
    return domains


def _dns_via(value: Any, path: str, tunnels: set[str]) -> str | None:
    if value is None:
        return None
    via = check_iface(value, path)
    if via not in tunnels:
        raise StateError(path, f"{via!r} is not one of this state's tunnels")
    return via


def _dns_split(doc: Any, path: str, tunnels: set[str]) -> DnsSplit:
    obj = d.obj(doc, path, {"via", "servers", "domains"}, {"via", "servers"})
    via = _dns_via(obj["via"], f"{path}.via", tunnels)
    if via is None:
        raise StateError(f"{path}.via", "must name one of this state's tunnels")
    return DnsSplit(via, _dns_servers(obj["servers"], f"{path}.servers", min_len=1),
                    _dns_domains(obj.get("domains", []), f"{path}.domains"))


def _dns_inside_tunnels(dns: DnsState, path: str, guard: GuardState) -> None:
    entries = [(f"{path}.servers", dns.servers)]
    entries += [(f"{path}.split[{i}].servers", s.servers) for i, s in enumerate(dns.split)]
    allowed = [ipaddress.ip_network(n) for n in guard.allow]
    for where, servers in entries:
        for j, server in enumerate(servers):
            ip = ipaddress.ip_address(server)
            for k, net in enumerate(allowed):
                if ip.version == net.version and ip in net:
                    raise StateError(f"{where}[{j}]", f"{server} is in guard.allow[{k}] "
                                     f"({net}): it would be asked outside the tunnels; take "
                                     "it out of allow")


def _copies(doc: Any, path: str, tunnels: set[str], marking: Marking | None) -> CopyState:
    obj = d.obj(doc, path, {"tunnels"})
    names = d.each(obj.get("tunnels", []), f"{path}.tunnels", MAX_TUNNELS, check_iface)
    d.unique(list(names), f"{path}.tunnels", "tunnel")
    for i, name in enumerate(names):
        if name not in tunnels:
            raise StateError(f"{path}.tunnels[{i}]", f"{name!r} is not one of this state's "
                                                     "tunnels")
    if marking is None or marking.mark_of("realtime") is None:
        raise StateError(path, "copies are of the realtime class: the marking needs it")
    if marking.masquerade:
        # A copy through another gateway would reach the far end from another address:
        # copies meet only where the paths converge (a shared exit).
        raise StateError(path, "copies need a shared exit (marking.masquerade false)")
    return CopyState(names)


def _mptcp(doc: Any, path: str, tunnels: tuple[TunnelState, ...],
           tables: tuple[TableState, ...], rules: tuple[RuleState, ...]) -> MptcpState:
    obj = d.obj(doc, path, {"endpoints", "subflows", "add_addr_accepted"})
    by_name = {t.name: t for t in tunnels}
    endpoints = d.each(obj.get("endpoints", []), f"{path}.endpoints", MPTCP_LIMIT_MAX,
                       lambda e, p: _mptcp_endpoint(e, p, by_name, tables, rules))
    d.unique([e.id for e in endpoints], f"{path}.endpoints", "id")
    d.unique([e.dev for e in endpoints], f"{path}.endpoints", "dev")
    d.unique([e.address for e in endpoints], f"{path}.endpoints", "address")
    return MptcpState(
        endpoints,
        d.integer(obj.get("subflows", 0), f"{path}.subflows", 0, MPTCP_LIMIT_MAX),
        d.integer(obj.get("add_addr_accepted", 0), f"{path}.add_addr_accepted", 0,
                  MPTCP_LIMIT_MAX),
    )


def _mptcp_endpoint(doc: Any, path: str, tunnels: dict[str, TunnelState],
                    tables: tuple[TableState, ...], rules: tuple[RuleState, ...]
                    ) -> MptcpEndpoint:
    obj = d.obj(doc, path, {"id", "dev", "address"}, {"id", "dev", "address"})
    ep_id = d.integer(obj["id"], f"{path}.id", MPTCP_ID_MIN, MPTCP_ID_MAX)
    dev = check_iface(obj["dev"], f"{path}.dev")
    tunnel = tunnels.get(dev)
    if tunnel is None:
        raise StateError(f"{path}.dev", f"{dev!r} is not one of this state's tunnels")
    if not any(ipaddress.ip_interface(a).version == 4 for a in tunnel.addresses):
        raise StateError(f"{path}.dev", f"{dev} has no IPv4 address to translate its "
                                        "subflows to")
    text = d.string(obj["address"], f"{path}.address", 16)
    try:
        address = ipaddress.IPv4Address(text)
    except ValueError:
        raise StateError(f"{path}.address", f"{text!r} is not an IPv4 address") from None
    if address not in ipaddress.ip_network(MPTCP_LOCAL_NET):
        raise StateError(f"{path}.address", f"{address} is not in Braid's MPTCP block "
                                            f"{MPTCP_LOCAL_NET}")
    # Without a rule into the tunnel's own table the subflow, bound to the tunnel, would
    # find no route (its class's mark leads to another table): say so here, not later.
    into = {t.id for t in tables if any(
        tuple(h.dev for h in r.nexthops) == (dev,) and r.dst == "0.0.0.0/0" for r in t.routes)}
    if not any(r.src == f"{address}/32" and r.action == "lookup" and r.table in into
               and r.fwmark is None and r.dst is None and r.ipproto is None for r in rules):
        raise StateError(f"{path}.address", f"no rule sends {address} into {dev} (a lookup "
                                            f"rule from {address}/32 to a table whose default "
                                            f"route is {dev})")
    return MptcpEndpoint(ep_id, dev, str(address))


def parse_guard(doc: Any, path: str, tunnels: set[str]) -> GuardState:
    """The guard's fields (also how a restarted helper reads the one it journaled)."""
    obj = d.obj(doc, path, {"allow", "via"})
    allow = d.each(obj.get("allow", []), f"{path}.allow", MAX_GUARD_ALLOW, _allowed_network)
    d.unique(list(allow), f"{path}.allow", "network")
    via_doc = obj.get("via")
    via = None
    if via_doc is not None:
        via = check_iface(via_doc, f"{path}.via")
        if via not in tunnels:
            raise StateError(f"{path}.via", f"{via!r} is not one of this state's tunnels")
    return GuardState(allow, via)


def _allowed_network(value: Any, path: str) -> str:
    net = _network(value, path, strict=True)
    parsed = ipaddress.ip_network(net)
    if parsed.prefixlen == 0:
        raise StateError(path, f"{net} is everything: the guard would guard nothing")
    if any(parsed.version == lo.version and parsed.overlaps(lo) for lo in _LOOPBACK):
        raise StateError(path, f"{net} is or holds loopback (always allowed, never routed)")
    return net


def check_iface(value: Any, path: str) -> str:
    return d.field(value, path, fields.check_iface)


def check_key(value: Any, path: str) -> str:
    return d.field(value, path, fields.check_key)


def _mark(value: Any, path: str, allowed: frozenset[int] | None = None) -> int:
    mark = d.integer(value, path, 0, 0xFFFFFFFF)
    if mark & ~MARK_MASK:
        raise StateError(path, f"{mark:#010x} has bits outside Braid's mask {MARK_MASK:#010x}")
    if allowed is not None and mark not in allowed:
        raise StateError(path, f"{mark:#010x} is not a Braid path mark (0x01000000.."
                               "0x0c000000, or the closed mark 0x0e000000)")
    return mark


def _interface_address(value: Any, path: str) -> str:
    text = d.string(value, path, 64)
    if "/" not in text:
        raise StateError(path, f"{text!r} needs a prefix length (like 198.19.0.2/32)")
    # One host, added without a prefix route: a /24 would route a whole network onto
    # the tunnel behind the rules' back (and claim addresses that are not Braid's).
    address = d.field(text, path, fields.check_host_address)
    if ipaddress.ip_interface(address).ip in ipaddress.ip_network(MPTCP_LOCAL_NET):
        raise StateError(path, f"{address} is in Braid's MPTCP block {MPTCP_LOCAL_NET} "
                               "(the helper's own subflow addresses)")
    return address


def _network(value: Any, path: str, *, strict: bool) -> str:
    return d.field(value, path, lambda t: fields.check_network(t, strict=strict))


def _peer(doc: Any, path: str) -> PeerState:
    obj = d.obj(
        doc,
        path,
        {"public_key", "preshared_key", "endpoint", "allowed_ips", "persistent_keepalive"},
        {"public_key"},
    )
    psk = obj.get("preshared_key")
    endpoint = obj.get("endpoint")
    keepalive = obj.get("persistent_keepalive")
    return PeerState(
        public_key=check_key(obj["public_key"], f"{path}.public_key"),
        preshared_key=None if psk is None else check_key(psk, f"{path}.preshared_key"),
        endpoint=None if endpoint is None else d.field(
            endpoint, f"{path}.endpoint", fields.check_endpoint_literal),
        # WireGuard itself masks host bits, so accept and normalise them.
        allowed_ips=d.each(obj.get("allowed_ips", []), f"{path}.allowed_ips", MAX_ALLOWED_IPS,
                           lambda a, p: _network(a, p, strict=False)),
        persistent_keepalive=None if keepalive is None or keepalive == 0 else d.number_field(
            keepalive, f"{path}.persistent_keepalive", fields.check_keepalive),
    )


def _tunnel(doc: Any, path: str) -> TunnelState:
    obj = d.obj(
        doc,
        path,
        {"name", "private_key", "addresses", "mtu", "listen_port", "fwmark", "peers"},
        {"name", "private_key"},
    )
    peers = d.each(obj.get("peers", []), f"{path}.peers", MAX_PEERS, _peer)
    d.unique([p.public_key for p in peers], f"{path}.peers", "public_key")
    fwmark, mtu, port = obj.get("fwmark"), obj.get("mtu"), obj.get("listen_port")
    tunnel = TunnelState(
        name=check_iface(obj["name"], f"{path}.name"),
        private_key=check_key(obj["private_key"], f"{path}.private_key"),
        addresses=d.each(obj.get("addresses", []), f"{path}.addresses", MAX_ADDRESSES,
                         _interface_address),
        mtu=None if mtu is None else d.number_field(mtu, f"{path}.mtu", fields.check_mtu),
        listen_port=None if port is None else d.number_field(
            port, f"{path}.listen_port", fields.check_port),
        fwmark=None if fwmark is None else _mark(fwmark, f"{path}.fwmark"),
        peers=peers,
    )
    d.unique(list(tunnel.addresses), f"{path}.addresses", "address")
    return tunnel


def _nexthop(doc: Any, path: str, tunnels: set[str]) -> Nexthop:
    obj = d.obj(doc, path, {"dev", "weight"}, {"dev"})
    dev = check_iface(obj["dev"], f"{path}.dev")
    if dev not in tunnels:
        raise StateError(f"{path}.dev", f"{dev!r} is not one of this state's tunnels")
    return Nexthop(dev, d.integer(obj.get("weight", 1), f"{path}.weight", WEIGHT_MIN, WEIGHT_MAX))


def _route(doc: Any, path: str, tunnels: set[str]) -> RouteState:
    obj = d.obj(doc, path, {"dst", "nexthops"}, {"dst", "nexthops"})
    hops = d.each(obj["nexthops"], f"{path}.nexthops", MAX_NEXTHOPS,
                  lambda h, p: _nexthop(h, p, tunnels), min_len=1)
    d.unique([h.dev for h in hops], f"{path}.nexthops", "dev")
    return RouteState(_network(obj["dst"], f"{path}.dst", strict=True), hops)


def _table(doc: Any, path: str, tunnels: set[str]) -> TableState:
    obj = d.obj(doc, path, {"id", "routes"}, {"id"})
    routes = d.each(obj.get("routes", []), f"{path}.routes", MAX_ROUTES,
                    lambda r, p: _route(r, p, tunnels))
    d.unique([r.dst for r in routes], f"{path}.routes", "dst")
    table = d.integer(obj["id"], f"{path}.id", TABLE_MIN, TABLE_MAX)
    if table == GUARD_TABLE:
        raise StateError(f"{path}.id", f"{table} is the guard's table (use {TABLE_MIN}.."
                                       f"{GUARD_TABLE - 1})")
    return TableState(table, routes)


def _rule(doc: Any, path: str, tables: set[int]) -> RuleState:
    obj = d.obj(
        doc,
        path,
        {"priority", "src", "dst", "fwmark", "fwmask", "action", "table", "ipproto"},
        {"priority", "action"},
    )
    ipproto = obj.get("ipproto")
    if ipproto is not None and ipproto not in RULE_IPPROTOS:
        raise StateError(f"{path}.ipproto", f"{str(ipproto)[:16]} is not one of "
                                            f"{', '.join(map(str, RULE_IPPROTOS))} (ICMP)")
    priority = d.integer(obj["priority"], f"{path}.priority", PRIORITY_MIN, PRIORITY_MAX)
    if GUARD_PRIORITY_MIN <= priority <= GUARD_PRIORITY_MAX:
        raise StateError(f"{path}.priority", f"{priority} is the guard's ({GUARD_PRIORITY_MIN}.."
                                             f"{GUARD_PRIORITY_MAX} are reserved for it)")
    src = _selector(obj.get("src"), f"{path}.src")
    dst = _selector(obj.get("dst"), f"{path}.dst")
    if src is not None and dst is not None and (
            ipaddress.ip_network(src).version != ipaddress.ip_network(dst).version):
        raise StateError(f"{path}.dst", "src and dst must be of one IP version")
    fwmark_doc, fwmask_doc = obj.get("fwmark"), obj.get("fwmask")
    fwmark = None if fwmark_doc is None else _mark(fwmark_doc, f"{path}.fwmark")
    fwmask = None if fwmask_doc is None else _mark(fwmask_doc, f"{path}.fwmask")
    if (fwmark is None) != (fwmask is None):
        raise StateError(f"{path}.fwmask", "fwmark and fwmask go together (both or neither)")
    if fwmark is not None and fwmask is not None:
        if fwmask == 0:
            raise StateError(f"{path}.fwmask", "must not be 0")
        if fwmark & ~fwmask:
            raise StateError(f"{path}.fwmark", "has bits outside fwmask")
        if fwmark == 0:
            # Mark 0 is every packet nobody marked: a catch-all by another name.
            raise StateError(f"{path}.fwmark", "must not be 0 (it matches all unmarked "
                                               "traffic)")
        if fwmark == BYPASS_CLASS_MARK:
            raise StateError(f"{path}.fwmark", f"{fwmark:#010x} is the bypass class's mark "
                                               "(the helper routes it itself)")
    if src is None and dst is None and fwmark is None:
        # A rule without selectors would capture all of the machine's traffic.
        raise StateError(path, "needs a selector: src, dst, or fwmark with fwmask")
    action = d.string(obj["action"], f"{path}.action", 16)
    table_doc = obj.get("table")
    if action == "lookup":
        if table_doc is None:
            raise StateError(f"{path}.table", "missing (a lookup rule names its table)")
        table = d.integer(table_doc, f"{path}.table", TABLE_MIN, TABLE_MAX)
        if table not in tables:
            raise StateError(f"{path}.table", f"{table} is not one of this state's tables")
    elif action == "unreachable":
        if table_doc is not None:
            raise StateError(f"{path}.table", "must be null for an unreachable rule")
        table = None
    else:
        raise StateError(f"{path}.action", f"{action!r} is not one of: lookup, unreachable")
    return RuleState(priority, src, fwmark, fwmask, action, table, dst, ipproto)


def _selector(value: Any, path: str) -> str | None:
    """A rule's src or dst: a strict network, never everything (a catch-all)."""
    if value is None:
        return None
    net = _network(value, path, strict=True)
    if ipaddress.ip_network(net).prefixlen == 0:
        raise StateError(path, f"{net} matches everything (no catch-all rules)")
    return net


def _mark_class(doc: Any, path: str) -> MarkClass:
    obj = d.obj(doc, path, {"name", "mark"}, {"name", "mark"})
    name = d.field(obj["name"], f"{path}.name", fields.check_class_name, 16)
    return MarkClass(name, _mark(obj["mark"], f"{path}.mark", PATH_MARKS))


def _marking(doc: Any, path: str) -> Marking:
    obj = d.obj(
        doc, path, {"bypass_mark", "classes", "masquerade", "flush_marks", "bulk_after_bytes",
                    "spread", "moves"},
        {"bypass_mark"}
    )
    bypass = _mark(obj["bypass_mark"], f"{path}.bypass_mark")
    if bypass != BYPASS_MARK:
        raise StateError(f"{path}.bypass_mark", f"must be Braid's bypass mark {BYPASS_MARK:#010x}")
    classes = d.each(obj.get("classes", []), f"{path}.classes", MAX_CLASSES, _mark_class)
    d.unique([c.name for c in classes], f"{path}.classes", "name")
    if DEFAULT_CLASS not in {c.name for c in classes}:
        # Without it nothing would be classified: every flow would leave unmarked.
        raise StateError(f"{path}.classes", f"needs the class {DEFAULT_CLASS!r} (what every "
                                            "flow no classifier claims gets)")
    flush_marks = d.each(obj.get("flush_marks", []), f"{path}.flush_marks", len(PATH_MARKS),
                         lambda m, p: _mark(m, p, PATH_MARKS))
    d.unique(list(flush_marks), f"{path}.flush_marks", "mark")
    spread = _spread(obj.get("spread", []), f"{path}.spread", classes)
    return Marking(
        bypass_mark=bypass,
        classes=classes,
        masquerade=d.boolean(obj.get("masquerade", False), f"{path}.masquerade"),
        flush_marks=flush_marks,
        bulk_after_bytes=d.opt_integer(obj.get("bulk_after_bytes"), f"{path}.bulk_after_bytes",
                                       0, MAX_BULK_AFTER_BYTES),
        spread=spread,
        moves=_moves(obj.get("moves", []), f"{path}.moves", spread),
    )


def _moves(doc: Any, path: str, spread: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Pairs of two different spread marks: a move takes a spread flow from one path
    of the spread to another (never out of it, nor onto the closed mark)."""
    def pair(item: Any, p: str) -> tuple[int, int]:
        if not isinstance(item, list) or len(item) != 2:
            raise StateError(p, "must be a pair [from mark, to mark]")
        src, dst = (_mark(m, f"{p}[{i}]", PATH_MARKS) for i, m in enumerate(item))
        for i, mark in enumerate((src, dst)):
            if mark not in spread:
                raise StateError(f"{p}[{i}]", f"{mark:#010x} is not one of marking.spread's "
                                              "marks (a move stays within the spread)")
        if src == dst:
            raise StateError(p, "moves a flow onto the path it is on")
        return src, dst
    return d.each(doc, path, MAX_SPREAD_SLOTS, pair)


def _spread(doc: Any, path: str, classes: tuple[MarkClass, ...]) -> tuple[int, ...]:
    """Bulk's slots: path marks (not the closed one: a slot is a path to spread onto),
    at least two different ones, and only with a class ``bulk``."""
    slots = d.each(doc, path, MAX_SPREAD_SLOTS, lambda m, p: _mark(m, p, PATH_MARKS))
    if not slots:
        return ()
    for i, mark in enumerate(slots):
        if mark == CLOSED_MARK:
            raise StateError(f"{path}[{i}]", f"{mark:#010x} is the closed mark: a slot names "
                                             "a path to spread onto")
    if "bulk" not in {c.name for c in classes}:
        raise StateError(path, "spreading is the bulk class's: the marking needs it")
    if len(set(slots)) < 2:
        raise StateError(path, "names one path: spreading needs two or more (send [] and "
                               "give bulk that path's mark)")
    return slots


def _spread_routed(marking: Marking, rules: tuple[RuleState, ...], path: str) -> None:
    """Every spread mark has its lookup rule: a slot whose path is not routed would send
    its flows into that mark's unreachable rule (fail closed, but never chosen)."""
    routed = {r.fwmark for r in rules if r.action == "lookup" and r.fwmask == MARK_MASK}
    for i, mark in enumerate(marking.spread):
        if mark not in routed:
            raise StateError(f"{path}[{i}]", f"{mark:#010x} has no lookup rule in this "
                                             "state (spread only onto usable paths)")


__all__ = [
    "BYPASS_CLASS_MARK",
    "BYPASS_CLASS_PRIORITY",
    "BYPASS_MARK",
    "COPY_ROUTE_PRIORITY",
    "DEFAULT_CLASS",
    "EMPTY_STATE",
    "GUARD_ALLOW_PRIORITY",
    "GUARD_BLOCK_PRIORITY",
    "GUARD_PRIORITY_MAX",
    "GUARD_PRIORITY_MIN",
    "GUARD_TABLE",
    "IFACE_RE",
    "MARK_MASK",
    "MARK_SHIFT",
    "MAX_DNS_DOMAINS",
    "MAX_DNS_SERVERS",
    "MAX_SPREAD_SLOTS",
    "MPTCP_ID_MAX",
    "MPTCP_ID_MIN",
    "MPTCP_LIMIT_MAX",
    "MPTCP_LOCAL_NET",
    "MTU_MAX",
    "MTU_MIN",
    "NFT_COPY_FAMILY",
    "NFT_COPY_FAMILY6",
    "NFT_COPY_TABLE",
    "NFT_GUARD_TABLE",
    "NFT_MPTCP_FAMILY",
    "NFT_MPTCP_TABLE",
    "PATH_MARKS",
    "PRIORITY_MAX",
    "PRIORITY_MIN",
    "TABLE_MAX",
    "TABLE_MIN",
    "CopyState",
    "DesiredState",
    "DnsSplit",
    "DnsState",
    "GuardState",
    "MarkClass",
    "Marking",
    "MptcpEndpoint",
    "MptcpState",
    "Nexthop",
    "PeerState",
    "RouteState",
    "RuleState",
    "StateError",
    "TableState",
    "TunnelState",
    "parse_dns",
    "parse_guard",
    "parse_state",
]
