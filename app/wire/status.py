"""The helper's status reply: written by the helper (``to_json``), read by the client
(``from_json``), one definition for both. docs/helper-protocol.md, "Status"."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from app.wire.doc import plain


@dataclass(frozen=True)
class PeerStatus:
    public_key: str
    endpoint: str | None
    handshake_age_s: float | None  # None: never handshaken
    rx_bytes: int
    tx_bytes: int


@dataclass(frozen=True)
class TunnelStatus:
    name: str
    backend: str  # "userspace" | "kernel"
    up: bool  # the link exists, is up, and its device answers
    pid: int | None  # wireguard-go's pid (userspace backend)
    restarts: int  # times the helper restarted a dead wireguard-go
    handshake_age_s: float | None  # the freshest peer handshake
    rx_bytes: int
    tx_bytes: int
    peers: tuple[PeerStatus, ...] = ()


@dataclass(frozen=True)
class GuardStatus:
    """The kill switch as the kernel holds it (docs/helper-protocol.md, "Guard")."""

    active: bool  # both layers are in the kernel as the helper rendered them
    held: str | None  # None: part of the applied state; "client_left" | "adopted"
    allow: tuple[str, ...]
    via: str | None
    dropped_packets: int  # the nft layer's drop counter
    nft: bool = True  # table inet braid_guard is loaded, intact
    routing: bool = True  # the rules and table 52099 are in place

    @classmethod
    def from_json(cls, doc: Any) -> GuardStatus | None:
        if not isinstance(doc, dict):
            return None
        return cls(
            active=bool(doc.get("active", False)),
            held=None if doc.get("held") is None else str(doc["held"]),
            allow=tuple(str(a) for a in doc.get("allow") or ()),
            via=None if doc.get("via") is None else str(doc["via"]),
            dropped_packets=int(doc.get("dropped_packets") or 0),
            nft=bool(doc.get("nft", False)),
            routing=bool(doc.get("routing", False)),
        )


@dataclass(frozen=True)
class DnsStatus:
    """The system's DNS as the helper set it (docs/helper-protocol.md, "DNS")."""

    mechanism: str  # "resolved" | "resolvconf" | "file"
    active: bool  # the mechanism holds what was applied (file: its content is ours)
    held: str | None  # None: part of the applied state; "client_left" | "adopted"
    servers: tuple[str, ...]
    domains: tuple[str, ...]
    via: str | None  # the link systemd-resolved has them on (None: no link)
    blocked_queries: int = 0  # DNS to resolvers outside the tunnels the guard dropped

    @classmethod
    def from_json(cls, doc: Any) -> DnsStatus | None:
        if not isinstance(doc, dict):
            return None
        return cls(
            mechanism=str(doc.get("mechanism", "")),
            active=bool(doc.get("active", False)),
            held=None if doc.get("held") is None else str(doc["held"]),
            servers=tuple(str(a) for a in doc.get("servers") or ()),
            domains=tuple(str(a) for a in doc.get("domains") or ()),
            via=None if doc.get("via") is None else str(doc["via"]),
            blocked_queries=int(doc.get("blocked_queries") or 0),
        )


@dataclass(frozen=True)
class ClassesStatus:
    """Traffic classes by app (docs/classes.md): the groups, the watcher, what was
    classified how."""

    available: bool  # class groups can exist here (cgroup v2 reachable, nft's view ready)
    why: str | None  # why not, when not
    root: str | None  # the Braid root under the cgroup v2 hierarchy ("braid")
    groups: bool  # the class groups exist now (while a state with marking is held)
    watching: bool  # the process-events watcher applies saved rules as programs start
    rules: int  # rules held for the asking user
    members: dict[str, int] = field(default_factory=dict)  # class -> processes in its group
    # How new flows were classified since the marking table was last loaded: packets
    # counted by "app_<class>", "selector", "volume", "default" (docs/classes.md).
    flows: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_json(cls, doc: Any) -> ClassesStatus | None:
        if not isinstance(doc, dict):
            return None
        return cls(
            available=bool(doc.get("available", False)),
            why=None if doc.get("why") is None else str(doc["why"]),
            root=None if doc.get("root") is None else str(doc["root"]),
            groups=bool(doc.get("groups", False)),
            watching=bool(doc.get("watching", False)),
            rules=int(doc.get("rules") or 0),
            members={str(k): int(v) for k, v in (doc.get("members") or {}).items()},
            flows={str(k): int(v) for k, v in (doc.get("flows") or {}).items()},
        )


@dataclass(frozen=True)
class HelperStatus:
    backend: str
    persistent: bool
    owner_connected: bool  # the connection that applied the state is still open
    grace_remaining_s: float | None  # set while the grace period runs
    tunnels: tuple[TunnelStatus, ...]
    tables: tuple[int, ...]
    rules: int
    marking: bool  # the nft table inet braid is loaded, as the helper rendered it
    recovered: tuple[str, ...] = ()  # leftovers found and removed at start
    guard: GuardStatus | None = None  # the kill switch, when one is held
    dns: DnsStatus | None = None  # the system's DNS, while the helper sets it
    classes: ClassesStatus | None = None  # traffic classes by app (None: an older helper)
    # While bulk is spread: per spread mark, the bulk TCP flows spread onto it that are
    # established now (what the engine's rebalancing reads; app/core/spread.py).
    spread_flows: dict[int, int] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)  # fields this side does not know

    def tunnel(self, name: str) -> TunnelStatus | None:
        return next((t for t in self.tunnels if t.name == name), None)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        extra = doc.pop("extra")
        doc["spread_flows"] = {f"{m:#010x}": n for m, n in self.spread_flows.items()}
        return {**extra, **plain(doc)}

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> HelperStatus:
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        return cls(
            backend=str(doc["backend"]),
            persistent=bool(doc["persistent"]),
            owner_connected=bool(doc["owner_connected"]),
            grace_remaining_s=doc.get("grace_remaining_s"),
            tunnels=tuple(
                TunnelStatus(
                    name=str(t["name"]),
                    backend=str(t["backend"]),
                    up=bool(t["up"]),
                    pid=t.get("pid"),
                    restarts=int(t.get("restarts", 0)),
                    handshake_age_s=t.get("handshake_age_s"),
                    rx_bytes=int(t["rx_bytes"]),
                    tx_bytes=int(t["tx_bytes"]),
                    peers=tuple(PeerStatus(**p) for p in t.get("peers", [])),
                )
                for t in doc["tunnels"]
            ),
            tables=tuple(int(x) for x in doc["tables"]),
            rules=int(doc["rules"]),
            marking=bool(doc["marking"]),
            recovered=tuple(str(x) for x in doc.get("recovered", [])),
            # An older helper sends no guard: none is held.
            guard=GuardStatus.from_json(doc.get("guard")),
            dns=DnsStatus.from_json(doc.get("dns")),  # an older helper: none
            classes=ClassesStatus.from_json(doc.get("classes")),
            spread_flows={int(m, 16): int(n) for m, n in (doc.get("spread_flows") or {}).items()},
            extra={k: v for k, v in doc.items() if k not in known},
        )

