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
from dataclasses import dataclass, field

from app.core.detect import ChangeDetector
from app.core.errors import BraidError
from app.core.liveness import Health, LivenessConfig, ProbeTracker
from app.core.pathstats import PathStats
from app.core.plan import PathSpec
from app.core.profiles.model import GatewaySecrets, Profile
from app.core.scoring import ScoreInput

# WireGuard's REJECT_AFTER_TIME: past this, no session key can still be valid.
STALE_HANDSHAKE_S = 180.0
# A saturated path: Braid's own traffic on it (either way) at least this rate, and a queue
# (smoothed RTT over the path's base RTT) of at least this much.
FULL_MIN_BPS = 2_000_000.0
FULL_QUEUE_MS, FULL_QUEUE_SHARE = 10.0, 0.3
LINK_RATE_S = 0.5  # time constant of the tunnel's own rates (the 10 ms counter reads)


@dataclass
class LinkRates:
    """The tunnel's inner traffic, from its own counters (linkstats.py): bits per
    second either way, smoothed over about half a second."""

    rx_bps: float = 0.0
    tx_bps: float = 0.0
    _last: tuple[float, int, int] | None = None

    def update(self, now: float, rx_bytes: int, tx_bytes: int) -> None:
        if self._last is not None:
            t0, rx0, tx0 = self._last
            dt = now - t0
            if dt > 0 and rx_bytes >= rx0 and tx_bytes >= tx0:
                a = min(1.0, dt / LINK_RATE_S)
                self.rx_bps += a * ((rx_bytes - rx0) * 8 / dt - self.rx_bps)
                self.tx_bps += a * ((tx_bytes - tx0) * 8 / dt - self.tx_bps)
        self._last = (now, rx_bytes, tx_bytes)


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
            dns=gw.dns,
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
    link: LinkRates = field(default_factory=LinkRates)
    detector: ChangeDetector = field(default_factory=ChangeDetector)

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

    @property
    def queue_ms(self) -> float | None:
        """Smoothed RTT over the path's base RTT (its queue), once both are known."""
        srtt, base = self.stats.srtt_ms, self.stats.base_rtt_ms()
        return None if srtt is None or base is None else max(0.0, srtt - base)

    @property
    def saturated(self) -> bool:
        """Saturated: full of Braid's own traffic, carrying a lot and queueing. Its late and lost
        probes are the queue's, not an outage: a worse score, never score 0 for that
        loss (scoring.py), never down while its tunnel receives (liveness.py)."""
        q = self.queue_ms
        base = self.stats.base_rtt_ms() or 0.0
        return q is not None and max(self.link.rx_bps, self.link.tx_bps) >= FULL_MIN_BPS \
            and q >= max(FULL_QUEUE_MS, FULL_QUEUE_SHARE * base)

    @property
    def degrading(self) -> bool:
        """The early warning (detect.py): the path's RTT or loss is rising."""
        return self.detector.degrading

    @property
    def degrading_reason(self) -> str | None:
        why = self.detector.reason
        if why is not None and self.saturated:
            why += " (a queue of Braid's own traffic)"
        return why

    def score_input(self) -> ScoreInput:
        m = self.stats
        return ScoreInput(self.name, self.usable, m.srtt_ms, m.loss, m.jitter_ms, self.cost,
                          self.tracker.recent_lost, recent_size=self.tracker.recent_size,
                          saturated=self.saturated)


def make_paths(profile: Profile, specs: list[PathSpec],
               liveness: LivenessConfig) -> list[PathRuntime]:
    out = []
    for spec, gw in zip(specs, profile.gateways, strict=True):
        stats = PathStats()
        path = PathRuntime(spec=spec, cost=gw.cost, stats=stats,
                           tracker=ProbeTracker(stats, liveness))
        path.tracker.observer = path.detector
        out.append(path)
    return out


def stall_suspected(path: PathRuntime, paths: list[PathRuntime]) -> bool:
    """No other live path has answered since ``path`` was last heard: everything went
    silent at once, more likely a local stall than paths failing together (liveness.py).
    The backup path (50 ms probes) answers within the silence a carried path needs, so
    a real failure is not held."""
    last = path.tracker.last_heard
    others = [p.tracker for p in paths if p is not path
              and p.tracker.health in (Health.UP, Health.SUSPECT)]
    if last is None or not others:
        return False
    return all(t.last_reply is None or t.last_reply <= last for t in others)


def take_status(paths: list[PathRuntime], tunnels: Mapping[str, tuple[float | None, int, int]],
                now: float) -> None:
    """Passive signals from the helper's status: ``tunnels`` maps an interface to its
    (handshake age, rx bytes, tx bytes); rates are over the time since the last one.
    WireGuard's rx rising is evidence the path delivered since the previous status (a
    slow signal, once a second, next to the tunnel's own counters: probing.py)."""
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
            if rx > rx0:  # the slow passive signal: it received since the last status
                p.tracker.heard(t0)
        p.counters = (now, rx, tx)
