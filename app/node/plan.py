"""A role's state as the kernel objects it needs: devices, routes, rules, the nft table
and sysctls (docs/gateways.md, "What a role sets up"). Pure: the reconcile compares
this with what the kernel holds.

Gateway (shared exit): its clients' addresses are routed into its tunnel (table 52100,
``to <client> lookup``); whatever comes in from the tunnel goes to the exit
(``iif <tunnel> lookup 52101``: a default route into the backbone), and nowhere else
when the backbone is gone (``iif <tunnel> unreachable``). The nft table lets the
tunnel forward only to the backbone and back. Nothing is translated.

Gateway (own exit): its clients' addresses are routed into its tunnel; their traffic
leaves by the node's own routes, masqueraded onto the uplink and only there.

Exit: each gateway's link sets the conntrack mark of every packet that comes in from it
to that gateway's number, so the mark names the gateway the flow's *last* packet came
from; replies get the mark back as their packet mark and a rule per mark routes them
into that gateway's link (one table each, closed by an ``unreachable`` when the link is
gone). A reply whose gateway has not brought the exit anything from that client for
``HEARD_FOR`` goes through one that has (a downloading client behind a dead path would
otherwise never be answered again). One conntrack entry per flow whichever gateway it
comes through (the tuple has
no interface in it), loose reverse-path filtering on the links (a client's address
arrives from every gateway), and the only address translation, onto the uplink.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from app.node.confine import (
    EXIT,
    EXIT_MARK_CLOSED,
    EXIT_MARK_MASK,
    EXIT_PRIO_CLOSED,
    EXIT_PRIO_COPY_ROUTES,
    GATEWAY,
    GATEWAY_PRIO_CLIENTS,
    GATEWAY_PRIO_CLIENTS_CLOSED,
    GATEWAY_PRIO_CLOSED,
    GATEWAY_PRIO_EXIT,
    GATEWAY_TABLE_CLIENTS,
    GATEWAY_TABLE_EXIT,
    Confinement,
    exit_mark,
    exit_priorities,
    exit_table,
)
from app.node.state import ExitState, GatewayState, NodeState
from app.wire.state import Nexthop, RouteState, TableState, TunnelState

RP_LOOSE = "2"
DEFAULT = {4: "0.0.0.0/0", 6: "::/0"}
FORWARDING = {4: "net/ipv4/ip_forward", 6: "net/ipv6/conf/all/forwarding"}


@dataclass(frozen=True)
class NodeRule:
    """An ip rule of a role. ``table`` None is ``unreachable``."""

    family: int  # 4 or 6
    priority: int
    iif: str | None = None
    dst: str | None = None
    fwmark: int | None = None
    fwmask: int | None = None
    table: int | None = None
    oif: str | None = None  # the exit's IPv6 copy routes only (_exit_copies)

    def describe(self) -> str:
        sel = [f"iif {self.iif}"] if self.iif else []
        if self.oif:
            sel.append(f"oif {self.oif}")
        if self.dst:
            sel.append(f"to {self.dst}")
        if self.fwmark is not None:
            sel.append(f"fwmark {self.fwmark:#x}/{(self.fwmask or 0):#x}")
        action = "unreachable" if self.table is None else f"lookup {self.table}"
        return f"ipv{self.family} rule {self.priority} {' '.join(sel)} {action}"


@dataclass(frozen=True)
class Plan:
    conf: Confinement
    devices: tuple[TunnelState, ...]  # the role's WireGuard devices, with their peers
    tables: tuple[TableState, ...]
    rules: tuple[NodeRule, ...]
    nft: str  # the role's nft table, in nft's native syntax
    sysctls: tuple[tuple[str, str], ...]  # (key under /proc/sys, value)
    nft_copy: str | None = None  # the exit's realtime copies (ip family: nft `dup`)
    nft_copy6: str | None = None  # the same for IPv6 (ip6 family), with IPv6 clients


def plan(state: NodeState) -> Plan:
    return plan_gateway(state) if isinstance(state, GatewayState) else plan_exit(state)


def _version(net: str) -> int:
    return ipaddress.ip_network(net, strict=False).version


def _families(nets: tuple[str, ...]) -> list[int]:
    """The IP versions a role carries: IPv4 always (the probes), IPv6 if a client has it."""
    return sorted({4} | {_version(n) for n in nets})


def _forwarding(nets: tuple[str, ...]) -> list[tuple[str, str]]:
    return [(FORWARDING[v], "1") for v in _families(nets)]


def _both(priority: int, *, iif: str | None = None, fwmark: int | None = None,
          fwmask: int | None = None, table: int | None = None) -> tuple[NodeRule, ...]:
    """A rule for IPv4 and IPv6: what closes one family must close the other."""
    return tuple(NodeRule(v, priority, iif=iif, fwmark=fwmark, fwmask=fwmask, table=table)
                 for v in (4, 6))


def _daddr(addr: str) -> str:
    ip = ipaddress.ip_interface(addr).ip
    return f"{'ip' if ip.version == 4 else 'ip6'} daddr {ip}"


def _names(names: list[str]) -> str:
    quoted = [f'"{n}"' for n in names]
    return quoted[0] if len(quoted) == 1 else "{ " + ", ".join(quoted) + " }"


def _table(conf: Confinement, chains: list[list[str]], sets: tuple[str, ...] = ()) -> str:
    out = [f"table {conf.nft_table} {{", *(f"\t{line}" for line in sets)]
    for chain in chains:
        out += [f"\tchain {chain[0]} {{", *(f"\t\t{line}" for line in chain[1:]), "\t}"]
    return "\n".join([*out, "}"]) + "\n"


def plan_gateway(state: GatewayState) -> Plan:
    tunnel = state.tunnel.name
    clients = state.client_networks
    tables = [TableState(GATEWAY_TABLE_CLIENTS, tuple(
        RouteState(n, (Nexthop(tunnel),)) for n in clients))]
    rules = [NodeRule(_version(n), GATEWAY_PRIO_CLIENTS, dst=n, table=GATEWAY_TABLE_CLIENTS)
             for n in clients]
    # With the tunnel gone, what is on its way to a client goes nowhere rather than out
    # of the node's own default route.
    rules += [NodeRule(_version(n), GATEWAY_PRIO_CLIENTS_CLOSED, dst=n) for n in clients]
    sysctls = _forwarding(clients)
    devices = [state.tunnel]
    # Names here passed the role's patterns (confine.py): safe inside nft strings.
    forward = ["forward", "type filter hook forward priority filter; policy accept;"]
    chains = [forward]
    if state.backbone is not None:
        backbone = state.backbone.name
        devices.append(state.backbone)
        tables.append(TableState(GATEWAY_TABLE_EXIT, tuple(
            RouteState(DEFAULT[v], (Nexthop(backbone),)) for v in _families(clients))))
        rules += [*_both(GATEWAY_PRIO_EXIT, iif=tunnel, table=GATEWAY_TABLE_EXIT),
                  *_both(GATEWAY_PRIO_CLOSED, iif=tunnel)]
        # Replies come back from the exit with any source: the node's own default
        # route does not point into the backbone, so strict filtering would drop them.
        sysctls.append((f"net/ipv4/conf/{backbone}/rp_filter", RP_LOOSE))
        forward += [f'iifname "{tunnel}" oifname != "{backbone}" drop',
                    f'iifname "{backbone}" oifname != "{tunnel}" drop']
    else:
        egress = state.egress
        forward += [f'iifname "{tunnel}" oifname != "{egress}" drop',
                    f'oifname "{tunnel}" iifname != "{egress}" drop']
        chains.append(["postrouting",
                       "type nat hook postrouting priority srcnat; policy accept;",
                       f'iifname "{tunnel}" oifname "{egress}" masquerade'])
    return Plan(GATEWAY, tuple(devices), tuple(tables), tuple(rules), _table(GATEWAY, chains),
                tuple(sysctls))


# A reply goes back through the gateway its flow's last packet came from, unless the
# exit has heard nothing from that client through that gateway for this long; then
# through the first gateway it has (a downloading client sends only when it receives:
# after its path died nothing of the flow would ever come through another gateway, and
# the exit would answer into the dead one for good). The client's probes cross every
# live path at least every 200 ms (its standby rate; 50 ms on a path that carries a
# class), so 500 ms of silence is a dead path, not a slow or lossy one: 10 probes in a
# row lost at the carried path's slowest rate.
HEARD_FOR = "500ms"


def plan_exit(state: ExitState) -> Plan:
    mask = f"{EXIT_MARK_MASK:#010x}"
    keep = f"{0xFFFFFFFF & ~EXIT_MARK_MASK:#010x}"
    links = [link.tunnel.name for link in state.links]
    prerouting = ["prerouting", "type filter hook prerouting priority mangle; policy accept;"]
    tables: list[TableState] = []
    rules: list[NodeRule] = []
    sysctls = _forwarding(state.clients)
    for link in state.links:
        name = link.tunnel.name
        # A link's own address answers through that gateway alone: the client's probe of
        # this path measures this path, not whichever one its packet took.
        prerouting += [f'iifname != "{name}" {_daddr(a)} drop' for a in link.tunnel.addresses]
    families = [(v, kw) for v, kw in ((4, "ip"), (6, "ip6"))
                if any(_version(n) == v for n in state.clients)]
    for link in state.links:
        name, mark = link.tunnel.name, exit_mark(link.mark)
        for v, kw in families:
            prerouting.append(f'iifname "{name}" update @heard{v} {{ {kw} saddr . {mark:#010x} }}')
        # Every packet, not only a flow's first: the mark follows the client's last choice.
        prerouting.append(f'iifname "{name}" ct mark set ct mark & {keep} | {mark:#010x} return')
        table = exit_table(link.mark)
        tables.append(TableState(table, tuple(RouteState(DEFAULT[v], (Nexthop(name),))
                                              for v in _families(state.clients))))
        lookup, closed = exit_priorities(link.mark)
        rules += [*_both(lookup, fwmark=mark, fwmask=EXIT_MARK_MASK, table=table),
                  *_both(closed, fwmark=mark, fwmask=EXIT_MARK_MASK)]
        sysctls.append((f"net/ipv4/conf/{name}/rp_filter", RP_LOOSE))
    rules += _both(EXIT_PRIO_CLOSED, fwmark=EXIT_MARK_CLOSED, fwmask=EXIT_MARK_MASK)
    v6 = any(_version(n) == 6 for n in state.clients)
    rules += _copy_routes(state) if v6 else ()
    restore = [f"ct mark & {mask} != 0x00000000 meta mark set ct mark & {mask}"]
    sets: list[str] = []
    fallbacks: list[list[str]] = []
    for v, kw in families:
        nets = f"{{ {', '.join(n for n in state.clients if _version(n) == v)} }}"
        # The client is the flow's original source: a reply's own address is still the
        # uplink's here, before the NAT hook turns it back.
        client = f"ct original {kw} saddr"
        restore += [f"{kw} daddr {nets} meta mark & {mask} == 0x00000000 "
                    f"meta mark set meta mark | {EXIT_MARK_CLOSED:#010x}",
                    f"ct mark & {mask} != 0x00000000 {client} {nets} jump fallback{v}"]
        sets += [f"set heard{v} {{", f"\ttype ipv{v}_addr . mark", "\tflags dynamic,timeout",
                 f"\ttimeout {HEARD_FOR}", "}"]
        # A rule's mark stays set when its lookup fails: each rule tries the next gateway,
        # the last puts the flow's own back (no gateway heard: nothing better to do).
        fallbacks.append([f"fallback{v}", f"{client} . meta mark @heard{v} return",
                          *(f"meta mark set {exit_mark(link.mark):#010x} "
                            f"{client} . meta mark @heard{v} return" for link in state.links),
                          f"meta mark set ct mark & {mask}"])
    prerouting += restore
    egress = state.egress
    chains = [
        prerouting,
        # The exit's own answers (to the probes) follow the same mark.
        ["output", "type route hook output priority mangle; policy accept;", *restore],
        *fallbacks,
        ["forward", "type filter hook forward priority filter; policy accept;",
         f'iifname {_names(links)} oifname != "{egress}" drop',
         f'oifname {_names(links)} iifname != "{egress}" drop'],
        ["postrouting", "type nat hook postrouting priority srcnat; policy accept;",
         f'iifname {_names(links)} oifname "{egress}" masquerade'],
    ]
    return Plan(EXIT, tuple(link.tunnel for link in state.links), tuple(tables), tuple(rules),
                _table(EXIT, chains, tuple(sets)), tuple(sysctls), _exit_copies(state),
                _exit_copies(state, 6) if v6 else None)


# The exit's half of realtime copies (docs/multipath.md; the client's is
# app/helper/copies.py), per IP version: what identifies one packet (addresses, UDP
# header, the first payload bytes, as one raw field: nft 1.0.6 aborts listing a
# concatenated key with a raw part; IPv6's 56 bytes leave 16 of payload), the packets
# whose header is where that key expects it, a flow's key and a reply's (after un-NAT).
@dataclass(frozen=True)
class _CopyFamily:
    table: str
    key: str
    udp: str
    flow: str
    flow_back: str
    daddr: str


_COPY_FAMILIES = {
    4: _CopyFamily(EXIT.copy_table or "", "@nh,96,320", "meta l4proto udp ip hdrlength 5",
                   "ip saddr . udp sport . ip daddr . udp dport",
                   "ip daddr . udp dport . ip saddr . udp sport", "ip daddr"),
    6: _CopyFamily(EXIT.copy_table6 or "", "@nh,64,448", "ip6 nexthdr udp",
                   "ip6 saddr . udp sport . ip6 daddr . udp dport",
                   "ip6 daddr . udp dport . ip6 saddr . udp sport", "ip6 daddr"),
}
_COPY_TIMEOUT = "1s"


def _exit_copies(state: ExitState, version: int = 4) -> str:
    """Copies meet here. Upstream, the first of a packet's copies (from any gateway)
    passes and the others are dropped, before the ``inet`` table marks the flow with
    their gateway; a packet identical to one that came through the *same* gateway a
    moment ago is a retransmission and passes. A gateway whose copies were dropped is
    remembered for the flow (``copy_<n>``, for a second), and the flow's replies are
    copied to it too (``dup``; the reply itself goes by the flow's mark). Only UDP.
    IPv6's ``dup`` needs a route through its device: _copy_routes."""
    fam = _COPY_FAMILIES[version]
    sets = [("seen", fam.key)]
    pre = ["prerouting", "type filter hook prerouting priority -160; policy accept;"]
    fwd = ["forward", "type filter hook forward priority filter; policy accept;"]
    mask = f"{EXIT_MARK_MASK:#010x}"
    for link in state.links:
        name, n = link.tunnel.name, link.mark
        sets += [(f"seen_{n}", fam.key), (f"copy_{n}", fam.flow)]
        sel = f'iifname "{name}" {fam.udp}'
        pre += [
            f"{sel} {fam.key} @seen_{n} accept",
            # One rule: two copies on two CPUs cannot both pass (the element's limit).
            f"{sel} add @seen_{n} {{ {fam.key} }} add @seen {{ {fam.key} limit rate "
            f"over 1/minute burst 1 packets }} update @copy_{n} {{ {fam.flow} }} "
            'counter name "copies_removed" drop',
        ]
        fwd.append(f"meta l4proto udp meta mark & {mask} != {exit_mark(n):#010x} "
                   f'{fam.flow_back} @copy_{n} counter name "copies" dup to {fam.daddr} device '
                   f'"{name}"')
    out = [f"table {fam.table} {{", '\tcounter copies {', '\t}',
           '\tcounter copies_removed {', '\t}']
    for set_name, key in sets:
        out += [f"\tset {set_name} {{", f"\t\ttypeof {key}", "\t\tsize 65535",
                "\t\tflags dynamic,timeout", f"\t\ttimeout {_COPY_TIMEOUT}", "\t}"]
    for chain in (pre, fwd):
        out += [f"\tchain {chain[0]} {{", *(f"\t\t{line}" for line in chain[1:]), "\t}"]
    return "\n".join([*out, "}"]) + "\n"


def _copy_routes(state: ExitState) -> tuple[NodeRule, ...]:
    """IPv6 looks a ``dup`` clone's route up with mark 0 and the clone's device, which
    only a route through that device satisfies (IPv4 takes the destination as on-link):
    ``oif <link> lookup <its table>``, one per link."""
    return tuple(NodeRule(6, EXIT_PRIO_COPY_ROUTES, oif=link.tunnel.name,
                          table=exit_table(link.mark)) for link in state.links)
