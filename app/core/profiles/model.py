"""What a profile is: gateways, weights, settings. Data only (no I/O, no keyring)."""

from __future__ import annotations

from dataclasses import dataclass

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Peer:
    public_key: str  # base64, 32 bytes
    endpoint: str | None  # "host:port" as written in the .conf (may be a hostname)
    allowed_ips: tuple[str, ...]
    persistent_keepalive: int | None


@dataclass(frozen=True)
class Gateway:
    name: str  # ^[a-z][a-z0-9-]{0,11}$
    interface: str  # default "br-" + name
    addresses: tuple[str, ...]  # CIDR
    dns: tuple[str, ...]
    mtu: int | None
    listen_port: int | None
    peer: Peer
    cost: float = 1.0  # relative cost (>= 0); scoring normalises it
    probe: str | None = None  # IPv4 address the engine pings through this tunnel
    # The name of the .conf file it was imported from (no folder): shown to the user,
    # and re-importing a file of that name replaces this gateway. None: not imported
    # from a file (a lab's), or imported before Braid kept it.
    source: str | None = None


@dataclass(frozen=True)
class Weights:
    latency: float = 0.4
    loss: float = 0.3
    cost: float = 0.3
    jitter: float = 0.0


@dataclass(frozen=True)
class ClassTuning:
    """How eagerly one traffic class moves between paths (decide.py says what each does)."""

    margin: float  # score points (0..1) a better path must lead by
    dwell_s: float  # ... continuously, for this long
    hold_down_s: float  # quiet time after a move; up-time before a path may carry the class
    unusable_dwell_s: float  # the dwell when the current path scores 0 (lossy)


# Realtime leaves a worse path sooner (a call notices within seconds, and on a shared
# exit a move costs it nothing); bulk moves reluctantly (its TCP flows pay for every move
# on separate exits, and its throughput is the aggregate's business, not one path's).
DEFAULT_TUNING: dict[str, ClassTuning] = {
    "realtime": ClassTuning(margin=0.08, dwell_s=3.0, hold_down_s=10.0, unusable_dwell_s=0.3),
    "bulk": ClassTuning(margin=0.15, dwell_s=10.0, hold_down_s=30.0, unusable_dwell_s=1.0),
    "default": ClassTuning(margin=0.10, dwell_s=5.0, hold_down_s=15.0, unusable_dwell_s=0.5),
}
COPIES_MODES = ("auto", "always", "off")


@dataclass(frozen=True)
class Settings:
    """What a user chooses for a profile beyond its gateways (docs/profiles.md)."""

    # The kill switch and tunnels stay when the app quits or crashes ("always on").
    always_on: bool = False
    # The LAN (the client's directly connected networks) stays reachable while connected.
    lan_access: bool = True
    exclude: tuple[str, ...] = ()  # networks that bypass the tunnels
    copies: str = "auto"  # realtime over two paths: auto (when needed) | always | off
    bulk_after_mb: float = 50.0  # a flow that has moved this much becomes bulk
    tuning: tuple[tuple[str, ClassTuning], ...] = ()  # per-class overrides of DEFAULT_TUNING

    def class_tuning(self, cls: str) -> ClassTuning:
        return dict(self.tuning).get(cls, DEFAULT_TUNING[cls])


@dataclass(frozen=True)
class Profile:
    name: str  # ^[a-z0-9][a-z0-9_-]{0,31}$
    gateways: tuple[Gateway, ...]
    weights: Weights = Weights()
    lab: str | None = None  # set for a lab's profile ("lab-<lab>")
    # The gateways carry traffic to one exit that does the only address translation
    # (docs/gateways.md): every tunnel has the same inner address, and a flow may move
    # between paths without its far end noticing.
    shared_exit: bool = False
    settings: Settings = Settings()

    def gateway(self, name: str) -> Gateway:
        for gw in self.gateways:
            if gw.name == name:
                return gw
        raise KeyError(name)


@dataclass(frozen=True)
class GatewaySecrets:
    private_key: str  # base64; never printed, logged or written to a non-0600 file
    preshared_key: str | None

    def __repr__(self) -> str:  # a stray log line or traceback must not show keys
        psk = "set" if self.preshared_key else "none"
        return f"GatewaySecrets(private_key=<hidden>, preshared_key=<{psk}>)"
