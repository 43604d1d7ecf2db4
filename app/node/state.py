"""The node roles' desired states, and their validation (docs/gateways.md, "States").

A *gateway* terminates its clients' WireGuard tunnels and either carries their traffic
over a backbone tunnel to the shared exit, untranslated (``backbone``), or is its own
exit and translates it onto its uplink (``egress``). The *exit* terminates one backbone
tunnel per gateway, translates everything onto its uplink, and sends each reply back
through the gateway its flow's last packet came in from.

Everything is parsed into frozen dataclasses before anything is touched, with the typed
reads of app/wire/doc.py and the field rules of app/wire/fields.py, so a wrong field is
refused with its path (``gateways[1].tunnel.listen_port: 70000 is out of range
1..65535``) and nothing changes. Pure: no I/O, no root.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from app.node.confine import (
    EXIT,
    EXIT_MARK_MAX,
    EXIT_MARK_MIN,
    GATEWAY,
    ROLE_EXIT,
    ROLE_GATEWAY,
    ROLES,
    UPLINK_RE,
    Confinement,
)
from app.wire import doc as d
from app.wire import fields
from app.wire.doc import StateError
from app.wire.state import DEFAULT_MTU, PeerState, TunnelState

MAX_CLIENTS = 64
MAX_CLIENT_NETWORKS = 16
MAX_ADDRESSES = 8
MAX_GATEWAYS = EXIT_MARK_MAX - EXIT_MARK_MIN + 1
BACKBONE_KEEPALIVE = 25  # the gateway calls the exit: the exit can answer only once it has


@dataclass(frozen=True)
class GatewayState:
    name: str
    tunnel: TunnelState  # the clients' tunnel; its peers are the clients
    backbone: TunnelState | None  # to the exit: one peer, with an endpoint
    egress: str | None  # own exit: the uplink its clients' traffic is translated onto

    @property
    def role(self) -> str:
        return ROLE_GATEWAY

    @property
    def client_networks(self) -> tuple[str, ...]:
        return tuple(n for p in self.tunnel.peers for n in p.allowed_ips)


@dataclass(frozen=True)
class ExitLink:
    """The exit's end of one gateway's backbone tunnel."""

    name: str  # the gateway's name
    mark: int  # 1..14: which gateway a flow's last packet came in from
    tunnel: TunnelState  # one peer: the gateway's backbone key, no endpoint


@dataclass(frozen=True)
class ExitState:
    name: str
    egress: str  # the uplink: the only place client traffic is translated
    clients: tuple[str, ...]  # the client networks every gateway may carry
    links: tuple[ExitLink, ...]

    @property
    def role(self) -> str:
        return ROLE_EXIT


NodeState = GatewayState | ExitState


# ---- the wire form ------------------------------------------------------------------
def _tunnel_doc(t: TunnelState) -> dict[str, Any]:
    return {"name": t.name, "private_key": t.private_key, "listen_port": t.listen_port,
            "addresses": list(t.addresses), "mtu": t.mtu}


def _client_doc(p: PeerState) -> dict[str, Any]:
    return {"public_key": p.public_key, "preshared_key": p.preshared_key,
            "allowed_ips": list(p.allowed_ips)}


def to_json(state: NodeState) -> dict[str, Any]:
    """The wire form (the inverse of :func:`parse_node`)."""
    if isinstance(state, GatewayState):
        backbone = None
        if state.backbone is not None:
            exit_peer = state.backbone.peers[0]
            backbone = {**_tunnel_doc(state.backbone), "exit": {
                "public_key": exit_peer.public_key, "preshared_key": exit_peer.preshared_key,
                "endpoint": exit_peer.endpoint,
                "persistent_keepalive": exit_peer.persistent_keepalive}}
            del backbone["listen_port"], backbone["addresses"]
        return {"role": ROLE_GATEWAY, "name": state.name, "tunnel": _tunnel_doc(state.tunnel),
                "clients": [_client_doc(p) for p in state.tunnel.peers],
                "backbone": backbone, "egress": state.egress}
    return {"role": ROLE_EXIT, "name": state.name, "egress": state.egress,
            "clients": list(state.clients),
            "gateways": [{"name": link.name, "mark": link.mark,
                          "tunnel": _tunnel_doc(link.tunnel),
                          "public_key": link.tunnel.peers[0].public_key,
                          "preshared_key": link.tunnel.peers[0].preshared_key}
                         for link in state.links]}


def dumps(state: NodeState) -> str:
    return json.dumps(to_json(state), sort_keys=True)


def redacted(state: NodeState) -> dict[str, Any]:
    """The wire form with private and preshared keys hidden, for printing."""
    doc = to_json(state)

    def hide(obj: Any) -> None:
        if isinstance(obj, dict):
            for key in ("private_key", "preshared_key"):
                if obj.get(key) is not None:
                    obj[key] = "(hidden)"
            for value in obj.values():
                hide(value)
        elif isinstance(obj, list):
            for value in obj:
                hide(value)

    hide(doc)
    return doc


# ---- validation ---------------------------------------------------------------------
def parse_node(doc: Any) -> NodeState:
    """Validate a decoded JSON document; StateError names the first wrong field."""
    if not isinstance(doc, dict):
        raise StateError("", "must be a JSON object")
    role = doc.get("role")
    if role == ROLE_GATEWAY:
        return parse_gateway(doc)
    if role == ROLE_EXIT:
        return parse_exit(doc)
    raise StateError("role", f"must be one of: {', '.join(ROLES)}")


def check_iface(value: Any, path: str, conf: Confinement) -> str:
    name = d.string(value, path, 16)
    if not conf.owns_iface(name):
        raise StateError(path, f"{name!r} is not a {conf.role} interface name "
                               f"({conf.iface_hint})")
    return name


def check_uplink(value: Any, path: str) -> str:
    name = d.string(value, path, 16)
    if not UPLINK_RE.match(name):
        raise StateError(path, f"{name!r} is not an interface name (1-15 of A-Z a-z 0-9 "
                               "_ . -, starting with a letter or digit)")
    if GATEWAY.owns_iface(name) or EXIT.owns_iface(name) or fields.IFACE_RE.match(name):
        raise StateError(path, f"{name!r} is one of Braid's own tunnels, not an uplink")
    return name


def _key(value: Any, path: str) -> str:
    return d.field(value, path, fields.check_key)


def _opt_key(value: Any, path: str) -> str | None:
    return None if value is None else _key(value, path)


def _client_network(value: Any, path: str) -> str:
    net = d.field(value, path, lambda t: fields.check_network(t, strict=False))
    if ipaddress.ip_network(net).prefixlen == 0:
        raise StateError(path, f"{net} is every address: a client network is the "
                               "client's own addresses (such as 10.77.0.2/32)")
    return net


def _no_overlap(clients: tuple[PeerState, ...]) -> None:
    """WireGuard gives an address to one peer: a second claim would silently move it."""
    seen: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for i, client in enumerate(clients):
        for j, text in enumerate(client.allowed_ips):
            net = ipaddress.ip_network(text)
            for other in seen:
                if net.version == other.version and net.overlaps(other):
                    raise StateError(f"clients[{i}].allowed_ips[{j}]",
                                     f"{net} overlaps {other}: each address belongs to "
                                     "one client")
            seen.append(net)


def _tunnel(doc: Any, path: str, conf: Confinement, *, listens: bool,
            addresses: bool, peers: tuple[PeerState, ...] = ()) -> TunnelState:
    allowed = {"name", "private_key", "mtu"} | ({"listen_port"} if listens else set()) \
        | ({"addresses"} if addresses else set())
    obj = d.obj(doc, path, allowed, {"name", "private_key"} | (
        {"listen_port"} if listens else set()))
    mtu = obj.get("mtu")
    addrs = d.each(obj.get("addresses", []), f"{path}.addresses", MAX_ADDRESSES,
                   lambda a, p: d.field(a, p, fields.check_interface_address))
    d.unique(list(addrs), f"{path}.addresses", "address")
    return TunnelState(
        name=check_iface(obj["name"], f"{path}.name", conf),
        private_key=_key(obj["private_key"], f"{path}.private_key"),
        addresses=addrs,
        mtu=DEFAULT_MTU if mtu is None else d.number_field(mtu, f"{path}.mtu",
                                                           fields.check_mtu),
        listen_port=d.number_field(obj["listen_port"], f"{path}.listen_port",
                                   fields.check_port) if listens else None,
        fwmark=None,
        peers=peers,
    )


def _client(doc: Any, path: str) -> PeerState:
    obj = d.obj(doc, path, {"public_key", "preshared_key", "allowed_ips"},
                {"public_key", "allowed_ips"})
    nets = d.each(obj["allowed_ips"], f"{path}.allowed_ips", MAX_CLIENT_NETWORKS,
                  _client_network, min_len=1)
    return PeerState(public_key=_key(obj["public_key"], f"{path}.public_key"),
                     preshared_key=_opt_key(obj.get("preshared_key"), f"{path}.preshared_key"),
                     endpoint=None, allowed_ips=nets, persistent_keepalive=None)


def _backbone(doc: Any, path: str) -> TunnelState:
    obj = d.obj(doc, path, {"name", "private_key", "mtu", "exit"}, {"name", "private_key",
                                                                     "exit"})
    epath = f"{path}.exit"
    peer = d.obj(obj["exit"], epath, {"public_key", "preshared_key", "endpoint",
                                      "persistent_keepalive"}, {"public_key", "endpoint"})
    keepalive = peer.get("persistent_keepalive", BACKBONE_KEEPALIVE)
    exit_peer = PeerState(
        public_key=_key(peer["public_key"], f"{epath}.public_key"),
        preshared_key=_opt_key(peer.get("preshared_key"), f"{epath}.preshared_key"),
        endpoint=d.field(peer["endpoint"], f"{epath}.endpoint", fields.check_endpoint_literal),
        # Everything may come back from the exit: replies from anywhere on the far side.
        allowed_ips=("0.0.0.0/0", "::/0"),
        persistent_keepalive=None if keepalive in (None, 0) else d.number_field(
            keepalive, f"{epath}.persistent_keepalive", fields.check_keepalive),
    )
    return _tunnel({k: v for k, v in obj.items() if k != "exit"}, path, GATEWAY,
                   listens=False, addresses=False, peers=(exit_peer,))


def parse_gateway(doc: Any) -> GatewayState:
    top = d.obj(doc, "", {"role", "name", "tunnel", "clients", "backbone", "egress"},
                {"role", "name", "tunnel", "clients"})
    if top["role"] != ROLE_GATEWAY:
        raise StateError("role", f"must be {ROLE_GATEWAY!r}")
    name = d.field(top["name"], "name", fields.check_gateway_name)
    clients = d.each(top["clients"], "clients", MAX_CLIENTS, _client, min_len=1)
    d.unique([c.public_key for c in clients], "clients", "public_key")
    _no_overlap(clients)
    tunnel = _tunnel(top["tunnel"], "tunnel", GATEWAY, listens=True, addresses=True,
                     peers=clients)
    backbone = None if top.get("backbone") is None else _backbone(top["backbone"], "backbone")
    egress = None if top.get("egress") is None else check_uplink(top["egress"], "egress")
    if (backbone is None) == (egress is None):
        raise StateError("backbone", "give exactly one of backbone (a shared exit) and "
                                     "egress (the gateway is its own exit)")
    if backbone is not None and backbone.name == tunnel.name:
        raise StateError("backbone.name", "must differ from tunnel.name")
    return GatewayState(name, tunnel, backbone, egress)


def _link(doc: Any, path: str, clients: tuple[str, ...]) -> ExitLink:
    obj = d.obj(doc, path, {"name", "mark", "tunnel", "public_key", "preshared_key"},
                {"name", "mark", "tunnel", "public_key"})
    gateway = PeerState(
        public_key=_key(obj["public_key"], f"{path}.public_key"),
        preshared_key=_opt_key(obj.get("preshared_key"), f"{path}.preshared_key"),
        endpoint=None,  # the gateway calls in; the exit answers where it heard from
        allowed_ips=clients, persistent_keepalive=None)
    tunnel = _tunnel(obj["tunnel"], f"{path}.tunnel", EXIT, listens=True, addresses=True,
                     peers=(gateway,))
    for i, addr in enumerate(tunnel.addresses):
        # The link's own address answers the client's probes through this gateway alone.
        d.field(addr, f"{path}.tunnel.addresses[{i}]", fields.check_host_address)
    return ExitLink(name=d.field(obj["name"], f"{path}.name", fields.check_gateway_name),
                    mark=d.integer(obj["mark"], f"{path}.mark", EXIT_MARK_MIN, EXIT_MARK_MAX),
                    tunnel=tunnel)


def parse_exit(doc: Any) -> ExitState:
    top = d.obj(doc, "", {"role", "name", "egress", "clients", "gateways"},
                {"role", "name", "egress", "clients", "gateways"})
    if top["role"] != ROLE_EXIT:
        raise StateError("role", f"must be {ROLE_EXIT!r}")
    name = d.field(top["name"], "name", fields.check_gateway_name)
    clients = d.each(top["clients"], "clients", MAX_CLIENT_NETWORKS, _client_network,
                     min_len=1)
    d.unique(list(clients), "clients", "network")
    links = d.each(top["gateways"], "gateways", MAX_GATEWAYS,
                   lambda g, p: _link(g, p, clients), min_len=1)
    d.unique([g.name for g in links], "gateways", "name")
    d.unique([g.mark for g in links], "gateways", "mark")
    d.unique([g.tunnel.name for g in links], "gateways", "tunnel.name")
    d.unique([g.tunnel.listen_port for g in links], "gateways", "tunnel.listen_port")
    d.unique([g.tunnel.peers[0].public_key for g in links], "gateways", "public_key")
    seen: set[str] = set()
    for i, g in enumerate(links):
        for j, addr in enumerate(g.tunnel.addresses):
            if addr in seen:  # each link's address answers probes through it alone
                raise StateError(f"gateways[{i}].tunnel.addresses[{j}]",
                                 "another gateway's link has this address")
            seen.add(addr)
    return ExitState(name, check_uplink(top["egress"], "egress"), clients, links)
