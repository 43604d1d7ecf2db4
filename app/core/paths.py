"""From a profile to the engine's paths: one per gateway, resolved, with its own
measurements (stats, liveness tracker) and passive signals from the helper.

Resolution happens once, at connect: an endpoint's host name is looked up here (the
helper takes IP literals only), the probe target is chosen (the placement's, the
profile's ``probe``, or the first host of the tunnel network), and the keys join the
spec. Nothing here sends a packet.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from app.core.errors import BraidError
from app.core.liveness import Health, LivenessConfig, ProbeTracker
from app.core.pathstats import PathStats
from app.core.plan import PathSpec
from app.core.profiles.model import GatewaySecrets, Profile

# WireGuard's REJECT_AFTER_TIME: past this, no session key can still be valid.
STALE_HANDSHAKE_S = 180.0


def default_probe_target(address: str) -> str:
    """The first host of the tunnel address's network (the gateway, by convention); for
    a /31 or /32 address, the first host of the /24 around it."""
    iface = ipaddress.ip_interface(address)
    net = iface.network if iface.network.prefixlen <= 30 else ipaddress.ip_network(
        f"{iface.ip}/24", strict=False)
    return str(next(net.hosts()))


def resolve_endpoint(endpoint: str | None, gateway: str) -> str | None:
    """``host:port`` -> ``IP:port`` (IPv4 first), as the helper takes IP literals only."""
    if endpoint is None:
        return None
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        return endpoint
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)
    except (OSError, ValueError) as exc:
        raise BraidError(f"cannot resolve the endpoint {endpoint} of gateway {gateway}: {exc}",
                         "check the name and your DNS, or write an IP address") from None
    infos.sort(key=lambda i: i[0] != socket.AF_INET)
    ip = str(infos[0][4][0])
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def path_specs(profile: Profile, secrets: Mapping[str, GatewaySecrets],
               probe_targets: Mapping[str, str] | None = None) -> list[PathSpec]:
    targets = probe_targets or {}
    specs = []
    for i, gw in enumerate(profile.gateways):
        sec = secrets.get(gw.name)
        if sec is None:
            raise BraidError(f"no keys for gateway {gw.name} of profile {profile.name}",
                             f"import it again: braid import FILE.conf --profile {profile.name}")
        v4 = next(a for a in gw.addresses if ipaddress.ip_interface(a).version == 4)
        specs.append(PathSpec(
            name=gw.name, index=i, interface=gw.interface, private_key=sec.private_key,
            preshared_key=sec.preshared_key, addresses=gw.addresses, mtu=gw.mtu,
            listen_port=gw.listen_port, peer_public_key=gw.peer.public_key,
            endpoint=resolve_endpoint(gw.peer.endpoint, gw.name),
            allowed_ips=gw.peer.allowed_ips, persistent_keepalive=gw.peer.persistent_keepalive,
            probe_target=targets.get(gw.name) or gw.probe or default_probe_target(v4),
        ))
    return specs


@dataclass
class PathRuntime:
    """One path while connected: its spec, its measurements, its passive signals."""

    spec: PathSpec
    cost: float
    stats: PathStats
    tracker: ProbeTracker
    handshake_age_s: float | None = None
    rx_bps: float = 0.0
    tx_bps: float = 0.0
    counters: tuple[float, int, int] | None = None  # (t, rx, tx) of the last status
    last_detection_s: float | None = None
    probe_error: str | None = None  # the socket's last complaint, while it lasts

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def target(self) -> str:
        return self.spec.probe_target

    def health(self) -> Health:
        """Probe health, overridden by a handshake too old to carry anything."""
        h = self.tracker.health
        if self.handshake_age_s is not None and self.handshake_age_s > STALE_HANDSHAKE_S:
            return Health.DOWN
        return h

    @property
    def usable(self) -> bool:
        return self.health() in (Health.UP, Health.SUSPECT)


def make_paths(profile: Profile, specs: list[PathSpec],
               liveness: LivenessConfig) -> list[PathRuntime]:
    out = []
    for spec, gw in zip(specs, profile.gateways, strict=True):
        stats = PathStats()
        out.append(PathRuntime(spec=spec, cost=gw.cost, stats=stats,
                               tracker=ProbeTracker(stats, liveness)))
    return out


def stall_suspected(path: PathRuntime, paths: list[PathRuntime]) -> bool:
    """No other live path has answered since ``path`` last did: everything went silent
    at once, more likely a local stall than paths failing together (liveness.py). A
    healthy standby (200 ms probes) answers within the ~200 ms a clean active path
    takes to reach K misses, so a real failure is barely held."""
    last = path.tracker.last_reply
    others = [p.tracker for p in paths if p is not path
              and p.tracker.health in (Health.UP, Health.SUSPECT)]
    if last is None or not others:
        return False
    return all(t.last_reply is None or t.last_reply <= last for t in others)


def take_status(paths: list[PathRuntime], tunnels: Mapping[str, tuple[float | None, int, int]],
                now: float) -> None:
    """Passive signals from the helper's status: ``tunnels`` maps an interface to its
    (handshake age, rx bytes, tx bytes); rates are over the time since the last one."""
    for p in paths:
        entry = tunnels.get(p.spec.interface)
        if entry is None:
            continue
        age, rx, tx = entry
        p.handshake_age_s = age
        if p.counters is not None:
            t0, rx0, tx0 = p.counters
            dt = max(now - t0, 1e-3)
            # A restarted wireguard-go counts from 0 again: a drop is a restart, not a rate.
            p.rx_bps = max(0, rx - rx0) * 8 / dt if rx >= rx0 else 0.0
            p.tx_bps = max(0, tx - tx0) * 8 / dt if tx >= tx0 else 0.0
        p.counters = (now, rx, tx)
