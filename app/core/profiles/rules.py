"""Every field of a profile checked, with the rules the helper applies too.

The shared rules (names, keys, MTU, ports, keepalive, endpoints, addresses, probe
targets) come from app/wire/fields.py, so a gateway that passes here is one the
helper accepts: a .conf that imports is a .conf that connects. What only the client
knows of (costs, weights, DNS) is checked here. Every check raises ValueError (the
shared rules' FieldError is one) saying what is wrong.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from app.core.errors import BraidError
from app.core.plan import MAX_PATHS
from app.core.profiles.model import COPIES_MODES, Gateway, GatewaySecrets, Profile, Settings
from app.wire import fields
from app.wire.fields import (
    check_endpoint,
    check_gateway_name,
    check_key,
    check_network,
    check_probe,
    check_profile_name,
    check_tunnel_address,
)
from app.wire.state import MAX_ADDRESSES, MAX_ALLOWED_IPS

__all__ = [
    "check_addresses",
    "check_allowed_ips",
    "check_cost",
    "check_dns",
    "check_endpoint",
    "check_gateway_name",
    "check_key",
    "check_network",
    "check_probe",
    "check_profile_name",
    "check_source",
    "check_tunnel_address",
    "gateway_label",
    "normalize_gateway",
    "validate_profile",
    "validate_secrets",
]

SOURCE_MAX = 255  # a file name (Linux's NAME_MAX)


def check_cost(value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or value < 0:
        raise ValueError(f"{value!r} is not a number >= 0")
    return float(value)


def check_dns(value: str) -> str:
    """A DNS server address, or (as wg-quick allows) a search domain: by the rules the
    helper holds them to (fields.py), so a gateway's DNS that imports is one it applies."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        return fields.check_dns_server(value)
    if "%" in value or ":" in value:
        return fields.check_dns_server(value)  # an IPv6 address with a scope id, or garbled
    try:
        return fields.check_search_domain(value)
    except fields.FieldError:
        raise ValueError(f"{value[:64]!r} is neither an IP address nor a search domain") \
            from None


def check_addresses(addresses: tuple[str, ...]) -> tuple[str, ...]:
    """A gateway's tunnel addresses: at least one, at most what the helper takes, none
    twice, and one of them IPv4 (the engine's probes and the path's source rule need
    it). A prefix (10.7.0.5/24, as wg-easy and PiVPN write) is kept: the plan makes it
    the host address plus a route."""
    if not addresses:
        raise ValueError("at least one address is needed")
    if len(addresses) > MAX_ADDRESSES:
        raise ValueError(f"{len(addresses)} addresses; a tunnel has at most {MAX_ADDRESSES}")
    out = tuple(check_tunnel_address(a) for a in addresses)
    hosts = [ipaddress.ip_interface(a).ip for a in out]
    twice = next((ip for i, ip in enumerate(hosts) if ip in hosts[:i]), None)
    if twice is not None:
        raise ValueError(f"{twice} is given twice; give each address once")
    if not any(ip.version == 4 for ip in hosts):
        raise ValueError(f"{', '.join(out)} has no IPv4 address; Braid needs one per "
                         "gateway (its probes are ICMPv4): add the IPv4 address your "
                         "provider gave this tunnel, e.g. Address = 10.8.0.2/32, "
                         f"{out[0]}")
    return out


def check_allowed_ips(networks: tuple[str, ...]) -> tuple[str, ...]:
    """A peer's networks: at least one, at most what the helper takes; host bits are
    cleared as WireGuard does."""
    if not networks:
        raise ValueError("at least one network is needed")
    if len(networks) > MAX_ALLOWED_IPS:
        raise ValueError(f"{len(networks)} networks; a peer has at most {MAX_ALLOWED_IPS}")
    return tuple(check_network(n) for n in networks)


def check_source(value: str) -> str:
    """The name of the file a gateway came from: shown in a terminal, so printable."""
    if not value or len(value) > SOURCE_MAX or not value.isprintable() or "/" in value:
        raise ValueError(f"{value[:64]!r} is not a file name (1-{SOURCE_MAX} printable "
                         "characters, no '/')")
    return value


def gateway_label(gw: Gateway) -> str:
    """How messages name a gateway: by name, and by its file where it has one."""
    return f"gateway {gw.name!r}" + (f" (from {gw.source})" if gw.source else "")


@contextmanager
def _field(name: str) -> Iterator[None]:
    """Prefix a ValueError raised inside with the field's name."""
    try:
        yield
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def normalize_gateway(gw: Gateway) -> Gateway:
    """``gw`` with every field checked and lists in canonical form (CIDR with prefix,
    networks without host bits); ValueError names the field that is wrong."""
    with _field("name"):
        check_gateway_name(gw.name)
    with _field("interface"):
        fields.check_iface(gw.interface)
    with _field("addresses"):
        addresses = check_addresses(gw.addresses)
    with _field("dns"):
        dns = tuple(check_dns(d) for d in gw.dns)
    with _field("mtu"):
        if gw.mtu is not None:
            fields.check_mtu(gw.mtu)
    with _field("listen_port"):
        if gw.listen_port is not None:
            fields.check_port(gw.listen_port)
    with _field("cost"):
        cost = check_cost(gw.cost)
    with _field("probe"):
        probe = None if gw.probe is None else check_probe(gw.probe)
    with _field("source"):
        if gw.source is not None:
            check_source(gw.source)
    peer = gw.peer
    with _field("peer.public_key"):
        check_key(peer.public_key)
    with _field("peer.endpoint"):
        if peer.endpoint is not None:
            check_endpoint(peer.endpoint)
    with _field("peer.allowed_ips"):
        allowed_ips = check_allowed_ips(peer.allowed_ips)
    with _field("peer.persistent_keepalive"):
        if peer.persistent_keepalive is not None:
            fields.check_keepalive(peer.persistent_keepalive)
    return replace(gw, addresses=addresses, dns=dns, cost=cost, probe=probe,
                   peer=replace(peer, allowed_ips=allowed_ips))


def validate_profile(profile: Profile) -> Profile:
    """``profile`` with its gateways normalised (see normalize_gateway); BraidError
    unless every field is valid."""
    where = f"profile {profile.name!r}"
    try:
        check_profile_name(profile.name)
    except ValueError as exc:
        raise BraidError(f"{where}: {exc}", "choose another profile name") from None
    if not profile.gateways:
        raise BraidError(f"{where} has no gateways", "import at least one .conf file")
    if len(profile.gateways) > MAX_PATHS:
        raise BraidError(f"{where} would have {len(profile.gateways)} gateways; Braid "
                         f"steers at most {MAX_PATHS}",
                         "import only the gateways you want to use (name the files rather "
                         "than their folder), or split them into several profiles")
    gateways = []
    for gw in profile.gateways:
        try:
            gateways.append(normalize_gateway(gw))
        except ValueError as exc:
            raise BraidError(f"{where}, {gateway_label(gw)}: {exc}",
                             "fix the gateway's .conf and import it again") from None
    for attr in ("name", "interface"):
        seen: set[str] = set()
        for gw in profile.gateways:
            value = getattr(gw, attr)
            if value in seen:
                raise BraidError(f"{where}: two gateways have the {attr} {value!r}",
                                 "give each gateway its own name (braid import --name)")
            seen.add(value)
    _check_listen_ports(where, gateways)
    if profile.shared_exit:
        _check_one_inner_address(where, gateways)
    w = profile.weights
    # Each weight by its name (weights.loss), as a profile file and the settings dialog
    # name it: "a weight" would leave the user guessing which.
    for name in ("latency", "loss", "cost", "jitter"):
        try:
            check_cost(getattr(w, name))
        except ValueError as exc:
            raise BraidError(f"{where}: weights.{name}: {exc}",
                             "weights are numbers >= 0") from None
    if w.latency + w.loss + w.cost + w.jitter <= 0:
        raise BraidError(f"{where}: all weights are 0", "give at least one weight > 0")
    try:
        settings = check_settings(profile.settings)
    except ValueError as exc:
        raise BraidError(f"{where}: settings.{exc}", "see docs/profiles.md, [settings]") from None
    return replace(profile, gateways=tuple(gateways), settings=settings)


def check_settings(s: Settings) -> Settings:
    """Every setting checked; ValueError starts with the setting's name."""
    with _field("exclude"):
        exclude = tuple(check_network(n) for n in s.exclude)
        for net in exclude:
            if ipaddress.ip_network(net).prefixlen == 0:
                raise ValueError(f"{net} would take everything out of the tunnels; "
                                 "disconnect instead")
    with _field("copies"):
        if s.copies not in COPIES_MODES:
            raise ValueError(f"{s.copies!r} is not one of {', '.join(COPIES_MODES)}")
    with _field("bulk_after_mb"):
        check_cost(s.bulk_after_mb)
    for cls, t in s.tuning:
        with _field(f"classes.{cls}"):
            if not 0 <= t.margin <= 1:
                raise ValueError(f"margin {t.margin} is not within 0..1 (score points)")
            for name in ("dwell_s", "hold_down_s", "unusable_dwell_s"):
                value = getattr(t, name)
                if not math.isfinite(value) or value < 0:
                    raise ValueError(f"{name} {value} is not a number of seconds >= 0")
    return replace(s, exclude=exclude)


def _check_listen_ports(where: str, gateways: list[Gateway]) -> None:
    """Two tunnels cannot bind one UDP port: the second would fail when connecting."""
    seen: dict[int, Gateway] = {}
    for gw in gateways:
        if gw.listen_port is None:
            continue
        if gw.listen_port in seen:
            raise BraidError(
                f"{where}: {gateway_label(seen[gw.listen_port])} and {gateway_label(gw)} "
                f"both have ListenPort {gw.listen_port}; two tunnels cannot listen on one port",
                "remove ListenPort from all but one of their files (without it WireGuard "
                "picks a free port) and import them again")
        seen[gw.listen_port] = gw


def _hosts(gw: Gateway) -> tuple[str, ...]:
    """A gateway's inner addresses without their prefixes, in a canonical order."""
    ips = sorted((ipaddress.ip_interface(a).ip for a in gw.addresses),
                 key=lambda ip: (ip.version, ip))
    return tuple(str(ip) for ip in ips)


def _check_one_inner_address(where: str, gateways: list[Gateway]) -> None:
    """A shared exit routes one inner address back through whichever gateway a flow
    uses (docs/gateways.md): every tunnel must carry that same address."""
    first = _hosts(gateways[0])
    differ = [gw for gw in gateways if _hosts(gw) != first]
    if differ:
        listed = "; ".join(f"{gateway_label(gw)} has {', '.join(_hosts(gw))}" for gw in differ)
        raise BraidError(
            f"{where} shares an exit, so every gateway needs the same inner address as "
            f"{gateway_label(gateways[0])} ({', '.join(first)}), but {listed}",
            "give every file the same Address (the one address the exit routes to you), "
            "or import gateways that each have their own exit without --shared-exit")


def validate_secrets(profile: str, gateway: str, secrets: GatewaySecrets) -> None:
    for kind, value in (("private", secrets.private_key), ("preshared", secrets.preshared_key)):
        if value is None:
            continue
        try:
            check_key(value)
        except ValueError as exc:
            raise BraidError(f"profile {profile!r}, gateway {gateway!r}: {kind} key {exc}",
                             "fix the gateway's .conf and import it again") from None
