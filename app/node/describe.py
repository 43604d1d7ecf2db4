"""A description of one's nodes, and what follows from it: each node's role state and
each client's tunnels (docs/gateways.md, "The description").

The description names the exit and the gateways (or, with separate exits, gateways that
are each their own exit), where each is reached, its tunnels' names, keys, ports and
addresses, and the clients. `braid gateway init` writes one with fresh keys and a plan
of private addresses; every node's state is computed from it, so all nodes agree on each
other's keys and addresses. The lab builds its nodes from a description too.

Every state built here is put through the roles' validator (state.parse_node) before it
is returned: the description cannot make a state a node would refuse.
"""

from __future__ import annotations

import ipaddress
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import tomli_w

from app.node import keys
from app.node.confine import EXIT, EXIT_MARK_MAX, EXIT_MARK_MIN, GATEWAY
from app.node.errors import NodeError
from app.node.state import (
    BACKBONE_KEEPALIVE,
    ExitLink,
    ExitState,
    GatewayState,
    NodeState,
    check_iface,
    check_uplink,
    parse_node,
    to_json,
)
from app.wire import doc as d
from app.wire import fields
from app.wire.doc import StateError
from app.wire.state import DEFAULT_MTU, PeerState, TunnelState

SHARED, SEPARATE = "shared", "separate"
TOPOLOGIES = (SHARED, SEPARATE)
FORMAT = 1
MAX_NODES = EXIT_MARK_MAX - EXIT_MARK_MIN + 1
MAX_CLIENTS = 64
CLIENT_KEEPALIVE = 25
HEADER = (
    "# Braid nodes: the exit, its gateways and their clients (docs/gateways.md).\n"
    "# This file holds every node's private keys: keep it mode 0600, copy it only to the\n"
    "# nodes themselves, and apply each node with `braid gateway apply NODE`.\n"
)


@dataclass(frozen=True)
class Backbone:
    """A gateway's link to the shared exit: both ends."""

    interface: str  # the gateway's end (bg-*)
    private_key: str = field(repr=False)
    exit_interface: str  # the exit's end (bx-*)
    exit_private_key: str = field(repr=False)
    exit_port: int  # where the exit listens for this gateway
    exit_endpoint: str  # IP:port the gateway sends to (the exit's address and port)
    exit_address: str  # the exit's address on this link: clients probe the path at it
    mark: int  # 1..14: how the exit tells this gateway's flows apart


@dataclass(frozen=True)
class GatewaySpec:
    name: str
    endpoint: str  # host:port the clients reach it at
    subnet: str  # its tunnel's network; the gateway is the first host
    interface: str  # its clients' tunnel (bg-*)
    private_key: str = field(repr=False)
    listen_port: int
    backbone: Backbone | None  # a shared exit
    egress: str | None  # its own exit: the uplink it translates onto
    subnet6: str | None = None  # its tunnel's IPv6 network, if it carries IPv6

    @property
    def address(self) -> str:
        return _host(self.subnet, 1, full=False)

    @property
    def addresses(self) -> tuple[str, ...]:
        return (self.address,) + ((_host(self.subnet6, 1, full=False),) if self.subnet6 else ())


def _host(subnet: str, number: int, *, full: bool = True) -> str:
    """Host ``number`` of ``subnet``, as a host route (``full``) or on its network."""
    net = ipaddress.ip_network(subnet)
    return f"{net.network_address + number}/{net.max_prefixlen if full else net.prefixlen}"


@dataclass(frozen=True)
class ClientSpec:
    name: str
    host: int  # its host number in the client subnet (separate exits: in each gateway's)
    private_keys: tuple[tuple[str, str], ...] = field(repr=False)  # (gateway, its key)

    def key(self, gateway: str) -> str:
        return dict(self.private_keys)[gateway]


@dataclass(frozen=True)
class ExitSpec:
    name: str
    egress: str  # the uplink: the only place clients' traffic is translated


@dataclass(frozen=True)
class Nodes:
    topology: str  # "shared" | "separate"
    client_subnet: str | None  # shared: every client's one address is a host of it
    mtu: int
    exit: ExitSpec | None
    gateways: tuple[GatewaySpec, ...]
    clients: tuple[ClientSpec, ...]
    client_subnet6: str | None = None  # shared, with IPv6: each client's IPv6 address

    def gateway(self, name: str) -> GatewaySpec:
        return _by_name(self.gateways, name, "gateway")

    def client(self, name: str) -> ClientSpec:
        return _by_name(self.clients, name, "client")

    def client_address(self, client: ClientSpec, gateway: GatewaySpec) -> str:
        """The client's address on ``gateway``'s tunnel: one for all with a shared exit."""
        subnet = self.client_subnet if self.topology == SHARED else gateway.subnet
        assert subnet is not None
        return _host(subnet, client.host)

    def client_addresses(self, client: ClientSpec, gateway: GatewaySpec) -> tuple[str, ...]:
        """IPv4, then IPv6 where the tunnel carries it."""
        subnet6 = self.client_subnet6 if self.topology == SHARED else gateway.subnet6
        return (self.client_address(client, gateway),) + (
            (_host(subnet6, client.host),) if subnet6 else ())

    @property
    def node_names(self) -> list[str]:
        return ([self.exit.name] if self.exit else []) + [g.name for g in self.gateways]


N = TypeVar("N", GatewaySpec, ClientSpec)
S = TypeVar("S", GatewayState, ExitState)


def _by_name(items: Iterable[N], name: str, what: str) -> N:
    found = {i.name: i for i in items}
    if name not in found:
        raise NodeError(f"no {what} {name!r} in the description",
                        f"use one of: {', '.join(found) or '(none)'}")
    return found[name]


# ---- states -----------------------------------------------------------------------
def gateway_state(nodes: Nodes, name: str) -> GatewayState:
    gw = nodes.gateway(name)
    clients = tuple(PeerState(keys.pubkey(c.key(gw.name)), None, None,
                              nodes.client_addresses(c, gw), None) for c in nodes.clients)
    tunnel = TunnelState(gw.interface, gw.private_key, gw.addresses, nodes.mtu,
                         gw.listen_port, None, clients)
    backbone = None
    if gw.backbone is not None:
        bb = gw.backbone
        exit_peer = PeerState(keys.pubkey(bb.exit_private_key), None, bb.exit_endpoint,
                              ("0.0.0.0/0", "::/0"), BACKBONE_KEEPALIVE)
        backbone = TunnelState(bb.interface, bb.private_key, (), nodes.mtu, None, None,
                               (exit_peer,))
    return _checked(GatewayState(gw.name, tunnel, backbone, gw.egress))


def exit_state(nodes: Nodes) -> ExitState:
    if nodes.exit is None:
        raise NodeError("this description has no exit (its gateways are their own exits)",
                        "apply a gateway instead")
    clients = tuple(str(ipaddress.ip_network(n))
                    for n in (nodes.client_subnet, nodes.client_subnet6) if n)
    links = []
    for gw in nodes.gateways:
        bb = gw.backbone
        assert bb is not None
        peer = PeerState(keys.pubkey(bb.private_key), None, None, clients, None)
        links.append(ExitLink(gw.name, bb.mark, TunnelState(
            bb.exit_interface, bb.exit_private_key, (bb.exit_address,), nodes.mtu,
            bb.exit_port, None, (peer,))))
    return _checked(ExitState(nodes.exit.name, nodes.exit.egress, clients, tuple(links)))


def node_state(nodes: Nodes, node: str) -> NodeState:
    """The state of ``node`` (the exit's or a gateway's name)."""
    if nodes.exit is not None and node == nodes.exit.name:
        return exit_state(nodes)
    if node not in {g.name for g in nodes.gateways}:
        raise NodeError(f"no node {node!r} in the description",
                        f"use one of: {', '.join(nodes.node_names)}")
    return gateway_state(nodes, node)


def _checked(state: S) -> S:
    try:
        return cast(S, parse_node(to_json(state)))
    except StateError as exc:
        raise NodeError(f"{state.role} {state.name}: {exc}", "fix the description") from None


@dataclass(frozen=True)
class ClientTunnel:
    """One of a client's tunnels, as its profile has it."""

    gateway: str
    address: str  # the client's address on it
    private_key: str = field(repr=False)
    peer_public_key: str  # the gateway's
    endpoint: str
    probe: str  # what the client pings through this tunnel (and only through it)
    address6: str | None = None  # its IPv6 address on it, if the tunnel carries IPv6


def client_tunnels(nodes: Nodes, client: str) -> tuple[ClientTunnel, ...]:
    """With a shared exit the probe is the exit's end of the gateway's backbone: the whole
    way, and a backbone outage shows; with separate exits, the gateway itself."""
    c = nodes.client(client)
    return tuple(ClientTunnel(
        gateway=gw.name, address=nodes.client_address(c, gw), private_key=c.key(gw.name),
        peer_public_key=keys.pubkey(gw.private_key), endpoint=gw.endpoint,
        probe=str(ipaddress.ip_interface(
            gw.backbone.exit_address if gw.backbone else gw.address).ip),
        address6=(nodes.client_addresses(c, gw)[1:] or (None,))[0],
    ) for gw in nodes.gateways)


# ---- the file -----------------------------------------------------------------------
def _key(value: Any, path: str) -> str:
    return d.field(value, path, fields.check_key)


def _subnet(value: Any, path: str, version: int = 4) -> str:
    net = d.field(value, path, lambda t: fields.check_network(t, strict=True))
    longest = 30 if version == 4 else 120
    if ipaddress.ip_network(net).version != version or \
            ipaddress.ip_network(net).prefixlen > longest:
        raise StateError(path, f"{net}: give an IPv{version} network of /{longest} or larger")
    return net


def _backbone(doc: Any, path: str) -> Backbone:
    obj = d.obj(doc, path, {"interface", "private_key", "exit_interface", "exit_private_key",
                            "exit_port", "exit_endpoint", "exit_address", "mark"},
                {"interface", "private_key", "exit_interface", "exit_private_key",
                 "exit_port", "exit_endpoint", "exit_address", "mark"})
    return Backbone(
        interface=check_iface(obj["interface"], f"{path}.interface", GATEWAY),
        private_key=_key(obj["private_key"], f"{path}.private_key"),
        exit_interface=check_iface(obj["exit_interface"], f"{path}.exit_interface", EXIT),
        exit_private_key=_key(obj["exit_private_key"], f"{path}.exit_private_key"),
        exit_port=d.number_field(obj["exit_port"], f"{path}.exit_port", fields.check_port),
        exit_endpoint=d.field(obj["exit_endpoint"], f"{path}.exit_endpoint",
                              fields.check_endpoint_literal),
        exit_address=d.field(obj["exit_address"], f"{path}.exit_address",
                             fields.check_host_address),
        mark=d.integer(obj["mark"], f"{path}.mark", EXIT_MARK_MIN, EXIT_MARK_MAX),
    )


def _gateway(doc: Any, path: str, topology: str) -> GatewaySpec:
    obj = d.obj(doc, path, {"name", "endpoint", "subnet", "subnet6", "interface",
                            "private_key", "listen_port", "backbone", "egress"},
                {"name", "endpoint", "subnet", "interface", "private_key", "listen_port",
                 "backbone" if topology == SHARED else "egress"})
    if topology == SHARED and "egress" in obj:
        raise StateError(f"{path}.egress", "a gateway of a shared exit translates nothing "
                                           "(the exit does): remove it")
    if topology == SEPARATE and "backbone" in obj:
        raise StateError(f"{path}.backbone", "separate exits have no backbone: remove it")
    return GatewaySpec(
        name=d.field(obj["name"], f"{path}.name", fields.check_gateway_name),
        endpoint=d.field(obj["endpoint"], f"{path}.endpoint", fields.check_endpoint, 260),
        subnet=_subnet(obj["subnet"], f"{path}.subnet"),
        interface=check_iface(obj["interface"], f"{path}.interface", GATEWAY),
        private_key=_key(obj["private_key"], f"{path}.private_key"),
        listen_port=d.number_field(obj["listen_port"], f"{path}.listen_port",
                                   fields.check_port),
        backbone=_backbone(obj["backbone"], f"{path}.backbone") if "backbone" in obj else None,
        egress=check_uplink(obj["egress"], f"{path}.egress") if "egress" in obj else None,
        subnet6=_subnet(obj["subnet6"], f"{path}.subnet6", 6) if "subnet6" in obj else None,
    )


def _client(doc: Any, path: str, gateways: list[str]) -> ClientSpec:
    obj = d.obj(doc, path, {"name", "host", "private_keys"}, {"name", "host", "private_keys"})
    kpath = f"{path}.private_keys"
    pk = d.obj(obj["private_keys"], kpath, set(gateways), set(gateways))
    return ClientSpec(
        name=d.field(obj["name"], f"{path}.name", fields.check_gateway_name),
        host=d.integer(obj["host"], f"{path}.host", 2, 65534),
        private_keys=tuple((g, _key(pk[g], f"{kpath}.{g}")) for g in gateways),
    )


def parse_nodes(doc: Any) -> Nodes:
    """A description from its decoded TOML; StateError names the first wrong field."""
    top = d.obj(doc, "", {"format", "topology", "client_subnet", "client_subnet6", "mtu",
                          "exit", "gateway", "client"}, {"format", "topology", "gateway",
                                                          "client"})
    if top["format"] != FORMAT:
        raise StateError("format", f"must be {FORMAT} (this Braid reads format {FORMAT})")
    topology = d.string(top["topology"], "topology", 16)
    if topology not in TOPOLOGIES:
        raise StateError("topology", f"must be one of: {', '.join(TOPOLOGIES)}")
    mtu = d.number_field(top.get("mtu", DEFAULT_MTU), "mtu", fields.check_mtu)
    gateways = d.each(top["gateway"], "gateway", MAX_NODES,
                      lambda g, p: _gateway(g, p, topology), min_len=1)
    names = [g.name for g in gateways]
    d.unique(names, "gateway", "name")
    d.unique([g.interface for g in gateways], "gateway", "interface")
    backbones = [g.backbone for g in gateways if g.backbone]
    for attr in ("mark", "exit_port", "exit_interface", "exit_address", "interface"):
        d.unique([getattr(b, attr) for b in backbones], "gateway", f"backbone.{attr}")
    clients = d.each(top["client"], "client", MAX_CLIENTS,
                     lambda c, p: _client(c, p, names), min_len=1)
    d.unique([c.name for c in clients], "client", "name")
    d.unique([c.host for c in clients], "client", "host")
    exit_spec, subnet = None, None
    if topology == SHARED:
        if "exit" not in top or "client_subnet" not in top:
            raise StateError("exit" if "exit" not in top else "client_subnet",
                             "missing (a shared exit needs [exit] and client_subnet)")
        e = d.obj(top["exit"], "exit", {"name", "egress"}, {"name", "egress"})
        exit_spec = ExitSpec(d.field(e["name"], "exit.name", fields.check_gateway_name),
                             check_uplink(e["egress"], "exit.egress"))
        if exit_spec.name in names:
            raise StateError("exit.name", "a gateway has this name too")
        subnet = _subnet(top["client_subnet"], "client_subnet")
        size = ipaddress.ip_network(subnet).num_addresses
        for i, c in enumerate(clients):
            if c.host >= size - 1:
                raise StateError(f"client[{i}].host", f"{c.host} is outside {subnet}")
    elif "exit" in top or "client_subnet" in top or "client_subnet6" in top:
        raise StateError("exit" if "exit" in top else "client_subnet",
                         "separate exits have no [exit] and no client_subnet")
    subnet6 = None
    if "client_subnet6" in top:
        subnet6 = _subnet(top["client_subnet6"], "client_subnet6", 6)
    return Nodes(topology, subnet, mtu, exit_spec, gateways, clients, subnet6)


def load_nodes(text: str, where: str) -> Nodes:
    """Parse a description file's text; NodeError names the file and the field."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise NodeError(f"{where}: not valid TOML: {exc}", "fix the syntax") from None
    try:
        nodes = parse_nodes(doc)
    except StateError as exc:
        raise NodeError(f"{where}: {exc}", "fix that field (docs/gateways.md)") from None
    for node in nodes.node_names:  # every state it leads to must be one a node accepts
        try:
            node_state(nodes, node)
        except NodeError as exc:
            raise NodeError(f"{where}: {exc.what}", exc.fix) from None
    return nodes


def dump_nodes(nodes: Nodes) -> str:
    doc: dict[str, Any] = {"format": FORMAT, "topology": nodes.topology}
    if nodes.client_subnet is not None:
        doc["client_subnet"] = nodes.client_subnet
    if nodes.client_subnet6 is not None:
        doc["client_subnet6"] = nodes.client_subnet6
    doc["mtu"] = nodes.mtu
    if nodes.exit is not None:
        doc["exit"] = {"name": nodes.exit.name, "egress": nodes.exit.egress}
    gateways = []
    for gw in nodes.gateways:
        g: dict[str, Any] = {"name": gw.name, "endpoint": gw.endpoint, "subnet": gw.subnet,
                             "interface": gw.interface, "listen_port": gw.listen_port,
                             "private_key": gw.private_key}
        if gw.subnet6 is not None:
            g["subnet6"] = gw.subnet6
        if gw.egress is not None:
            g["egress"] = gw.egress
        if gw.backbone is not None:
            bb = gw.backbone
            g["backbone"] = {"interface": bb.interface, "private_key": bb.private_key,
                             "exit_interface": bb.exit_interface,
                             "exit_private_key": bb.exit_private_key,
                             "exit_port": bb.exit_port, "exit_endpoint": bb.exit_endpoint,
                             "exit_address": bb.exit_address, "mark": bb.mark}
        gateways.append(g)
    doc["gateway"] = gateways
    doc["client"] = [{"name": c.name, "host": c.host, "private_keys": dict(c.private_keys)}
                     for c in nodes.clients]
    return HEADER + tomli_w.dumps(doc)


# ---- a new description --------------------------------------------------------------
BASE_NET = ipaddress.ip_network("10.77.0.0/16")
EXIT_BASE_PORT = 51821


def new_nodes(gateways: list[tuple[str, str]], clients: list[str], *,
              exit_node: tuple[str, str] | None, egress: str = "eth0",
              mtu: int = DEFAULT_MTU) -> Nodes:
    """A description with fresh keys and a plan in 10.77.0.0/16: clients in 10.77.0.0/24
    (shared) or each gateway's 10.77.(1+i).0/24 (separate), the exit's end of gateway i's
    link at 10.77.(101+i).1. ``gateways``: (name, host or host:port clients reach it at);
    ``exit_node``: (name, IP the gateways reach it at), None for separate exits."""
    if not gateways or len(gateways) > MAX_NODES:
        raise NodeError(f"{len(gateways)} gateways", f"give 1 to {MAX_NODES}")
    shared = exit_node is not None
    specs = []
    for i, (name, where) in enumerate(gateways):
        _plain_name(name, shared)
        endpoint = where if ":" in where else f"{where}:51820"
        backbone = None
        if exit_node is not None:
            port = EXIT_BASE_PORT + i
            backbone = Backbone(
                interface=f"bg-{name}-x", private_key=keys.genkey(),
                exit_interface=f"bx-{name}", exit_private_key=keys.genkey(),
                exit_port=port, exit_endpoint=f"{exit_node[1]}:{port}",
                exit_address=f"10.77.{101 + i}.1/32", mark=i + 1)
        specs.append(GatewaySpec(
            name=name, endpoint=endpoint, subnet=f"10.77.{1 + i}.0/24", interface=f"bg-{name}",
            private_key=keys.genkey(), listen_port=int(endpoint.rpartition(":")[2]),
            backbone=backbone, egress=None if shared else egress))
    cspecs = tuple(ClientSpec(c, 2 + i, tuple((g.name, keys.genkey()) for g in specs))
                   for i, c in enumerate(clients))
    nodes = Nodes(SHARED if shared else SEPARATE, "10.77.0.0/24" if shared else None, mtu,
                  ExitSpec(exit_node[0], egress) if exit_node else None, tuple(specs), cspecs)
    # Through the file's own parser: what init writes is what apply will read.
    return load_nodes(dump_nodes(nodes), "the new description")


def _plain_name(name: str, shared: bool) -> None:
    try:
        fields.check_gateway_name(name)
    except fields.FieldError as exc:
        raise NodeError(f"gateway name: {exc}", "choose another name") from None
    if shared and len(name) > 10:
        raise NodeError(f"gateway name {name!r} is too long for its tunnel names "
                        f"(bg-{name}-x is more than 15 characters)", "use 10 characters or fewer")
