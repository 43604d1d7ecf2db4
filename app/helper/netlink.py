"""Links, addresses, routes and rules over netlink, each touched only where it differs.

Everything here is confined by construction: links are matched by Braid's name
pattern, routes by table number and rules by priority, all in Braid's ranges.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.exceptions import NetlinkError

from app.helper.errors import KernelError
from app.wire.state import (
    IFACE_RE,
    PRIORITY_MAX,
    PRIORITY_MIN,
    TABLE_MAX,
    TABLE_MIN,
    RouteState,
    RuleState,
    TableState,
)

FR_ACT_TO_TBL = 1
FR_ACT_UNREACHABLE = 7
FIB_RULE_INVERT = 0x2
RTN_UNICAST, RTN_UNREACHABLE = 1, 7
IFF_UP = 0x1
IFA_F_NODAD = 0x02
IFA_F_NOPREFIXROUTE = 0x200
MAIN_TABLE = 254
EEXIST, ESRCH, ENOENT = 17, 3, 2
FAMILIES = (socket.AF_INET, socket.AF_INET6)
_VERSION_FAMILY = {4: socket.AF_INET, 6: socket.AF_INET6}


async def _all(result: Any) -> list[Any]:
    """pyroute2's async dumps: a coroutine yielding an async generator."""
    gen: AsyncIterator[Any] = await result
    return [msg async for msg in gen]


def _fail(action: str, exc: NetlinkError) -> KernelError:
    return KernelError(f"the kernel refused to {action}: {exc}")


# ---- links ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Link:
    index: int
    mtu: int
    up: bool


# Braid's tunnels are wireguard-go's TUN devices or the kernel's WireGuard links. Other
# br-* links are someone else's (Docker names its bridges br-<hex>): never touch them.
TUNNEL_KINDS = frozenset({"tun", "wireguard"})


def _kind(msg: Any) -> str | None:
    kind = msg.get(("linkinfo", "kind"))
    return str(kind) if kind is not None else None


async def foreign_link(ipr: AsyncIPRoute, name: str) -> str | None:
    """The kind of a link named ``name`` that is not a tunnel, or None."""
    index = await link_index(ipr, name)
    if index is None:
        return None
    kind = _kind((await _all(ipr.get_links(index)))[0])
    return None if kind in TUNNEL_KINDS else (kind or "unknown")


async def braid_link_info(ipr: AsyncIPRoute) -> dict[str, Link]:
    """Braid's links in this network namespace (br-* tunnels), from one dump."""
    out: dict[str, Link] = {}
    for msg in await _all(ipr.get_links()):
        name = msg.get("ifname")
        if isinstance(name, str) and IFACE_RE.match(name) and _kind(msg) in TUNNEL_KINDS:
            out[name] = Link(
                int(msg["index"]), int(msg.get("mtu") or 0), bool(msg["flags"] & IFF_UP)
            )
    return out


async def braid_links(ipr: AsyncIPRoute) -> dict[str, int]:
    """Braid's links in this network namespace, name -> index."""
    return {name: link.index for name, link in (await braid_link_info(ipr)).items()}


async def addresses(ipr: AsyncIPRoute) -> dict[int, set[str]]:
    """Addresses by link index, from one dump. Link-local ones are the kernel's (it adds
    them to a link it brings up where addr_gen_mode lets it): never Braid's, never
    compared, so one on a tunnel neither fails nor changes the next apply."""
    out: dict[int, set[str]] = {}
    for msg in await _all(ipr.get_addr()):
        iface = ipaddress.ip_interface(f"{msg.get('address')}/{msg['prefixlen']}")
        if not iface.ip.is_link_local:
            out.setdefault(int(msg["index"]), set()).add(str(iface))
    return out


def taken_elsewhere(want: Iterable[str], addrs: dict[int, set[str]],
                    braid: Iterable[int]) -> dict[str, int]:
    """Which of the addresses ``want`` a link that is not one of Braid's (``braid``:
    their indexes) already has, whatever its prefix: address -> that link's index."""
    ours = set(braid)
    elsewhere = {ipaddress.ip_interface(a).ip: index for index, have in addrs.items()
                 if index not in ours for a in have}
    return {a: elsewhere[ip] for a in want
            if (ip := ipaddress.ip_interface(a).ip) in elsewhere}


async def link_index(ipr: AsyncIPRoute, name: str) -> int | None:
    found = await ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


async def delete_link(ipr: AsyncIPRoute, name: str) -> bool:
    """Delete tunnel ``name`` if it exists; a link of that name that is not a tunnel is
    left alone (and reported by :func:`foreign_link` where it is in the way)."""
    index = await link_index(ipr, name)
    if index is None:
        return False
    if await foreign_link(ipr, name) is not None:
        return False
    try:
        await ipr.link("del", index=index)
    except NetlinkError as exc:
        if exc.code != 19:  # ENODEV: it went away on its own
            raise _fail(f"delete link {name}", exc) from None
    return True


async def ensure_link(
    ipr: AsyncIPRoute,
    name: str,
    want_addresses: Iterable[str],
    mtu: int,
    link: Link | None,
    have: set[str],
) -> list[str]:
    """Addresses exactly ``want_addresses``, the MTU, up; ``link`` and ``have`` are what
    the kernel holds (from :func:`braid_link_info` and :func:`addresses`)."""
    if link is None:
        raise KernelError(f"link {name} vanished while it was being configured")
    index = link.index
    changes: list[str] = []
    want = {str(ipaddress.ip_interface(a)) for a in want_addresses}
    try:
        for addr in sorted(have - want):
            iface = ipaddress.ip_interface(addr)
            await ipr.addr(
                "del", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen
            )
            changes.append(f"{name}: removed address {addr}")
        for addr in sorted(want - have):
            iface = ipaddress.ip_interface(addr)
            # A host address and no prefix route: the tunnel's routes are the state's
            # tables, never a route the kernel derives in main. No DAD: a point-to-point
            # tunnel has no neighbour to clash with, and DAD would change the address by
            # itself a second later. "replace": an address the kernel holds with other
            # flags is taken over rather than refused with EEXIST.
            flags = IFA_F_NOPREFIXROUTE | (IFA_F_NODAD if iface.version == 6 else 0)
            await ipr.addr("replace", index=index, address=str(iface.ip),
                           prefixlen=iface.network.prefixlen, flags=flags)
            changes.append(f"{name}: added address {addr}")
        if link.mtu != mtu:
            await ipr.link("set", index=index, mtu=mtu)
            changes.append(f"{name}: mtu {mtu}")
        if not link.up:
            no_link_local(name)
            await ipr.link("set", index=index, state="up")
            changes.append(f"{name}: up")
    except NetlinkError as exc:
        raise _fail(f"configure link {name}", exc) from None
    return changes


def no_link_local(name: str) -> None:
    """A WireGuard tunnel has no use for an IPv6 link-local address (the kernel's own
    WireGuard gets none); without one, the kernel does not keep changing the link
    after it is up (DAD, router solicitations into the tunnel)."""
    knob = Path(f"/proc/sys/net/ipv6/conf/{name}/addr_gen_mode")
    if knob.exists() and knob.read_text().strip() != "1":
        knob.write_text("1\n")


# ---- routes --------------------------------------------------------------------------
RouteKey = tuple[int, int, str, int]  # family, table, dst, metric


@dataclass(frozen=True)
class KernelRoute:
    family: int
    table: int
    dst: str
    nexthops: tuple[tuple[int, int], ...]  # (oif, weight), sorted; () when unreachable
    kind: int = RTN_UNICAST  # or RTN_UNREACHABLE
    metric: int = 0  # what the kernel reports: 0 for IPv4, 1024 for IPv6 by default

    @property
    def key(self) -> RouteKey:
        return (self.family, self.table, self.dst, self.metric)


def default_metric(family: int) -> int:
    """The metric the kernel gives a route that names none."""
    return 1024 if family == socket.AF_INET6 else 0


def _route_table(msg: Any) -> int:
    table = msg.get("table")
    return int(table if table is not None else msg["table"])


async def braid_routes(ipr: AsyncIPRoute) -> list[KernelRoute]:
    """Every route in Braid's tables, both families."""
    out: list[KernelRoute] = []
    for family in families():
        for msg in await _all(ipr.route("dump", family=family)):
            table = _route_table(msg)
            if not TABLE_MIN <= table <= TABLE_MAX:
                continue
            dst = msg.get("dst") or ("0.0.0.0" if family == socket.AF_INET else "::")
            network = str(ipaddress.ip_network(f"{dst}/{msg['dst_len']}", strict=False))
            kind = int(msg["type"])
            multipath = msg.get("multipath")
            if kind == RTN_UNREACHABLE:
                hops: tuple[tuple[int, int], ...] = ()
            elif multipath:
                hops = tuple(sorted((int(h["oif"]), int(h["hops"]) + 1) for h in multipath))
            else:
                hops = ((int(msg.get("oif") or 0), 1),)
            metric = msg.get("priority")
            out.append(KernelRoute(family, table, network, hops, kind,
                                   int(metric) if metric is not None else 0))
    return out


def _want_route(table: int, route: RouteState, links: dict[str, int]) -> KernelRoute:
    family = _VERSION_FAMILY[ipaddress.ip_network(route.dst).version]
    hops = tuple(sorted((links[h.dev], h.weight) for h in route.nexthops))
    return KernelRoute(family, table, route.dst, hops, metric=default_metric(family))


def _route_args(route: KernelRoute) -> dict[str, Any]:
    args: dict[str, Any] = {"family": route.family, "table": route.table, "dst": route.dst,
                            "priority": route.metric}
    if route.kind == RTN_UNREACHABLE:
        args["type"] = "unreachable"
    elif len(route.nexthops) == 1:
        args["oif"] = route.nexthops[0][0]
    else:
        args["multipath"] = [{"oif": oif, "hops": weight - 1} for oif, weight in route.nexthops]
    return args


async def delete_route(ipr: AsyncIPRoute, route: KernelRoute) -> None:
    try:
        await ipr.route("del", family=route.family, table=route.table, dst=route.dst,
                        priority=route.metric)
    except NetlinkError as exc:
        if exc.code != ESRCH:  # already gone (its link went away)
            raise _fail(f"delete route {route.dst} in table {route.table}", exc) from None


def want_routes(tables: Iterable[TableState], links: dict[str, int]) -> dict[RouteKey, KernelRoute]:
    """The routes of ``tables`` as the kernel holds them (``links``: name -> index)."""
    want: dict[RouteKey, KernelRoute] = {}
    for table in tables:
        for route in table.routes:
            missing = [h.dev for h in route.nexthops if h.dev not in links]
            if missing:
                raise KernelError(f"route {route.dst} in table {table.id}: no link {missing[0]}")
            kr = _want_route(table.id, route, links)
            want[kr.key] = kr
    return want


async def dump_routes(ipr: AsyncIPRoute) -> dict[RouteKey, KernelRoute]:
    return {r.key: r for r in await braid_routes(ipr)}


async def put_routes(
    ipr: AsyncIPRoute, want: dict[RouteKey, KernelRoute], have: dict[RouteKey, KernelRoute]
) -> list[str]:
    """Add or replace (atomically, per route) each wanted route ``have`` lacks or differs in."""
    changes: list[str] = []
    for key, new in want.items():
        if have.get(key) != new:
            try:
                await ipr.route("replace", **_route_args(new))
            except NetlinkError as exc:
                raise _fail(f"add route {new.dst} to table {new.table}", exc) from None
            changes.append(f"route {new.dst} table {new.table}")
    return changes


async def drop_routes(
    ipr: AsyncIPRoute, want: dict[RouteKey, KernelRoute], have: dict[RouteKey, KernelRoute]
) -> list[str]:
    """Delete each route of ``have`` that is not wanted."""
    changes: list[str] = []
    for key, old in have.items():
        if key not in want:
            await delete_route(ipr, old)
            changes.append(f"removed route {old.dst} table {old.table}")
    return changes


# ---- rules ---------------------------------------------------------------------------
@dataclass(frozen=True)
class KernelRule:
    family: int
    priority: int
    src: str | None
    fwmark: int | None
    fwmask: int | None
    action: int
    table: int | None
    dst: str | None = None
    invert: bool = False  # "not": the rule matches what its selectors do not
    ip_proto: int | None = None  # with sport/dport: the guard's DHCP rules only
    sport: int | None = None
    dport: int | None = None
    oif: str | None = None  # realtime copies' IPv6 routes only (app/helper/copies.py)

    def describe(self) -> str:
        fam = "ipv4" if self.family == socket.AF_INET else "ipv6"
        what = f"lookup {self.table}" if self.action == FR_ACT_TO_TBL else "unreachable"
        sel = ["not"] if self.invert else []
        if self.src:
            sel.append(f"from {self.src}")
        if self.dst:
            sel.append(f"to {self.dst}")
        if self.fwmark is not None:
            sel.append(f"fwmark {self.fwmark:#x}/{(self.fwmask or 0):#x}")
        if self.ip_proto is not None:
            sel.append(f"ipproto {self.ip_proto}")
        if self.sport is not None or self.dport is not None:
            sel.append(f"sport {self.sport} dport {self.dport}")
        if self.oif is not None:
            sel.append(f"oif {self.oif}")
        return f"{fam} rule {self.priority} {' '.join(sel)} {what}"


def _port(value: Any) -> int | None:
    """A rule's port range as pyroute2 reads it ("68:68"): the one port, or None."""
    if not isinstance(value, str) or ":" not in value:
        return None
    start, _, end = value.partition(":")
    return int(start) if start == end else None


def _net(msg: Any, key: str) -> str | None:
    addr = msg.get(key)
    return str(ipaddress.ip_network(f"{addr}/{msg[key + '_len']}")) if addr else None


async def braid_rules(ipr: AsyncIPRoute) -> list[KernelRule]:
    out: list[KernelRule] = []
    for family in families():
        for msg in await _all(ipr.get_rules(family=family)):
            priority = msg.get("priority")
            if priority is None or not PRIORITY_MIN <= priority <= PRIORITY_MAX:
                continue
            action = int(msg["action"])
            table = msg.get("table") if action == FR_ACT_TO_TBL else None
            fwmark, fwmask = msg.get("fwmark"), msg.get("fwmask")
            proto = msg.get("ip_proto")
            out.append(
                KernelRule(
                    family=family,
                    priority=int(priority),
                    src=_net(msg, "src"),
                    fwmark=int(fwmark) if fwmark is not None else None,
                    fwmask=int(fwmask) if fwmark is not None and fwmask is not None else None,
                    action=action,
                    table=int(table) if table is not None else None,
                    dst=_net(msg, "dst"),
                    invert=bool(int(msg["flags"]) & FIB_RULE_INVERT),
                    ip_proto=int(proto) if proto else None,
                    sport=_port(msg.get("sport_range")),
                    dport=_port(msg.get("dport_range")),
                    oif=str(msg.get("oifname")) if msg.get("oifname") else None,
                )
            )
    return out


def ipv6_enabled() -> bool:
    # With ipv6.disable=1 the kernel refuses IPv6 rules; there is nothing to close then.
    return Path("/proc/sys/net/ipv6").exists()


def families() -> tuple[int, ...]:
    return FAMILIES if ipv6_enabled() else (socket.AF_INET,)


def want_rules(rules: Iterable[RuleState]) -> list[KernelRule]:
    out = []
    v6 = ipv6_enabled()
    for rule in rules:
        for version in rule.families():
            if version == 6 and not v6:
                continue
            out.append(
                KernelRule(
                    family=_VERSION_FAMILY[version],
                    priority=rule.priority,
                    src=rule.src,
                    fwmark=rule.fwmark,
                    fwmask=rule.fwmask,
                    action=FR_ACT_TO_TBL if rule.action == "lookup" else FR_ACT_UNREACHABLE,
                    table=rule.table,
                    dst=rule.dst,
                    ip_proto=rule.ipproto,
                )
            )
    return out


def _rule_args(rule: KernelRule) -> dict[str, Any]:
    args: dict[str, Any] = {
        "family": rule.family,
        "priority": rule.priority,
        "action": rule.action,
        "table": rule.table if rule.table is not None else 0,
    }
    for key, value in (("src", rule.src), ("dst", rule.dst)):
        if value is not None:
            net = ipaddress.ip_network(value)
            args[key] = str(net.network_address)
            args[f"{key}_len"] = net.prefixlen
    if rule.fwmark is not None:
        args["fwmark"] = rule.fwmark
        args["fwmask"] = rule.fwmask
    if rule.invert:
        args["flags"] = FIB_RULE_INVERT
    if rule.ip_proto is not None:
        args["ip_proto"] = rule.ip_proto
    if rule.sport is not None:
        args["sport_range"] = f"{rule.sport}:{rule.sport}"
    if rule.dport is not None:
        args["dport_range"] = f"{rule.dport}:{rule.dport}"
    if rule.oif is not None:
        args["oifname"] = rule.oif
    return args


async def delete_rule(ipr: AsyncIPRoute, rule: KernelRule) -> None:
    try:
        await ipr.rule("del", **_rule_args(rule))
    except NetlinkError as exc:
        if exc.code != ENOENT:  # already gone
            raise _fail(f"delete {rule.describe()}", exc) from None


async def add_rules(ipr: AsyncIPRoute, want: list[KernelRule], have: list[KernelRule]) -> list[str]:
    """Add each wanted rule ``have`` lacks. Run before :func:`drop_rules`: a rule that
    replaces one of the same priority goes in behind it (the kernel keeps insertion
    order among equals), so the old one answers until it is deleted: no gap."""
    changes: list[str] = []
    present = set(have)
    for rule in want:
        if rule not in present:
            try:
                await ipr.rule("add", **_rule_args(rule))
            except NetlinkError as exc:
                raise _fail(f"add {rule.describe()}", exc) from None
            present.add(rule)
            changes.append(rule.describe())
    return changes


async def drop_rules(
    ipr: AsyncIPRoute, want: list[KernelRule], have: list[KernelRule]
) -> list[str]:
    """Delete each rule of ``have`` that is not wanted, and duplicates (the kernel
    accepts the same rule twice)."""
    changes: list[str] = []
    keep = set(want)
    seen: set[KernelRule] = set()
    for rule in have:
        if rule not in keep or rule in seen:
            await delete_rule(ipr, rule)
            changes.append(f"removed {rule.describe()}")
        seen.add(rule)
    return changes
