"""What the engine publishes: one immutable snapshot per update.

The CLI (`braid status --json`), the tray app, attached views (over the engine's
control socket) and the benchmarks all read these and nothing else, so the engine is
free to change inside as long as this holds. ``to_json``/``from_json`` are the wire
form of the control socket and of `braid status --json`.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from app.core.errors import BraidError

# Traffic classes, most important first. The plan's shape carries all of them
# from the start even while only `default` is steered.
CLASSES: tuple[str, ...] = ("realtime", "bulk", "default")


class ConnState(enum.Enum):
    """The states a user lives through (connection.py has the machine)."""

    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"  # tunnels coming up, paths being measured
    CONNECTED = "connected"  # every class has a healthy path
    DEGRADED = "degraded"  # a path is lost, a class is blocked, or its path is poor
    FAILING_OVER = "failing_over"  # traffic is moving off a dead path
    DISCONNECTING = "disconnecting"  # the user asked; tunnels are going down
    ERROR = "error"  # something failed; traffic stays blocked until it clears
    # Not an engine state: what a view shows when no engine runs but the helper's kill
    # switch still blocks (the client left without disconnecting).
    BLOCKED = "blocked"


class EventKind(enum.Enum):
    PLACED = "placed"  # a class's first path after connecting
    BETTER_PATH = "better_path"  # a voluntary move to a path better by the margin
    FAILOVER = "failover"  # forced: the class's path was declared down
    BLOCKED = "blocked"  # a class lost its last path: fail closed
    RESTORED = "restored"  # a blocked class has a path again
    PATH_DOWN = "path_down"
    PATH_UP = "path_up"
    ERROR = "error"  # the engine went into its error state
    RECOVERED = "recovered"  # ... and out of it
    REBALANCED = "rebalanced"  # a running bulk flow moved onto an idle spread path
    EVADED = "evaded"  # a class routed around its silent path before any verdict
    RETURNED = "returned"  # ... and back on it: it answered again

    @property
    def moves_class(self) -> bool:
        return self in (EventKind.PLACED, EventKind.BETTER_PATH, EventKind.FAILOVER,
                        EventKind.RESTORED, EventKind.EVADED, EventKind.RETURNED)


@dataclass(frozen=True)
class ErrorInfo:
    """What went wrong and what to do about it, as two fields (never one string split)."""

    what: str
    fix: str = ""

    @classmethod
    def of(cls, exc: BaseException) -> ErrorInfo:
        if isinstance(exc, BraidError):
            return cls(exc.what, exc.fix)
        return cls(f"internal error: {type(exc).__name__}: {exc}",
                   "this is a bug in Braid: disconnect, and report what `braid -v up` prints")

    def __str__(self) -> str:
        return f"{self.what}\n  what to do: {self.fix}" if self.fix else self.what


@dataclass(frozen=True)
class PathSnapshot:
    name: str  # gateway name from the profile ("hk")
    interface: str  # "br-hk"
    up: bool
    suspected: bool  # stopped answering, not yet declared down
    rtt_ms: float | None  # last probe
    rtt_smoothed_ms: float | None
    rtt_p50_ms: float | None
    rtt_p95_ms: float | None
    jitter_ms: float | None
    loss: float  # 0..1 over the sliding window
    score: float  # 0..1, 0 = unusable
    cost: float
    handshake_age_s: float | None
    rx_bps: float
    tx_bps: float
    classes: tuple[str, ...] = ()  # classes this path carries now
    # Why the score is what it is when that is not obvious: "hold-down 9 s",
    # "loss 6.1 % > 5 %", "loss episode (5 of the last 40 probes lost)", "probe error: ..."
    note: str | None = None
    # The early warning (detect.py), while the path's RTT or loss is rising: why, e.g.
    # "RTT 182 ms, +31 ms over its 151 ms baseline". None when it is not degrading.
    degrading: str | None = None


@dataclass(frozen=True)
class Event:
    t: float  # unix time
    kind: EventKind
    cls: str | None  # traffic class, where it concerns one
    from_path: str | None
    to_path: str | None
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)
    detection_ms: float | None = None  # from the last good probe to declared down
    switch_ms: float | None = None  # from decision to rules in the kernel
    seq: int = 0  # increasing per engine run: how views tell new events from old

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["kind"] = self.kind.value
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Event:
        return cls(**{**_known(cls, doc), "kind": EventKind(doc["kind"]),
                      "metrics": dict(doc.get("metrics") or {})})


@dataclass(frozen=True)
class EngineCounters:
    """Running totals a benchmark or a curious user reads instead of engine internals."""

    applies: int = 0  # desired states sent to the helper
    apply_ms_total: float = 0.0  # their round trips, summed
    apply_ms_last: float | None = None
    probes_sent: int = 0
    probe_errors: int = 0  # sends or receives the socket refused
    helper_reconnects: int = 0  # times the helper went away and was reached again


@dataclass(frozen=True)
class DnsSnapshot:
    """The system's DNS while connected: what the plan asks for and, once the helper
    reports it, how it is applied (docs/profiles.md, "DNS")."""

    servers: tuple[str, ...]
    domains: tuple[str, ...] = ()
    via: str | None = None  # the tunnel the default servers are asked through
    mechanism: str | None = None  # "resolved" | "resolvconf" | "file"; None: not yet applied
    active: bool = False  # the helper finds it in place
    blocked_queries: int = 0  # DNS to resolvers outside the tunnels the kill switch dropped

    @classmethod
    def from_json(cls, doc: Any) -> DnsSnapshot | None:
        if not isinstance(doc, dict):
            return None
        known = _known(cls, doc)
        return cls(**{**known, "servers": tuple(known.get("servers") or ()),
                      "domains": tuple(known.get("domains") or ())})


@dataclass(frozen=True)
class EngineSnapshot:
    t: float
    state: ConnState
    profile: str | None
    paths: tuple[PathSnapshot, ...]
    classes: dict[str, tuple[str, ...]]  # class -> paths carrying it, best first
    events: tuple[Event, ...]  # most recent last, bounded
    error: ErrorInfo | None = None
    counters: EngineCounters = EngineCounters()
    lab: str | None = None
    pid: int | None = None  # the process running the engine
    runner: str | None = None  # "braid up" | "the tray app"
    blocked: bool = False  # the kill switch holds traffic (no path, error, or no engine)
    dns: DnsSnapshot | None = None  # None: the system keeps its own DNS
    # Realtime copies (docs/multipath.md): the paths the kernel copies realtime onto now
    # (empty: none), and why they are on or off (None: this engine makes no copies).
    copies: tuple[str, ...] = ()
    copies_reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["state"] = self.state.value
        doc["classes"] = {k: list(v) for k, v in self.classes.items()}
        doc["events"] = [e.to_json() for e in self.events]
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> EngineSnapshot:
        paths = tuple(PathSnapshot(**{**_known(PathSnapshot, p),
                                      "classes": tuple(p.get("classes") or ())})
                      for p in doc.get("paths") or ())
        error = doc.get("error")
        return cls(**{
            **_known(cls, doc),
            "state": ConnState(doc["state"]),
            "paths": paths,
            "classes": {k: tuple(v) for k, v in (doc.get("classes") or {}).items()},
            "events": tuple(Event.from_json(e) for e in doc.get("events") or ()),
            "error": ErrorInfo(**error) if isinstance(error, dict) else None,
            "counters": EngineCounters(**_known(EngineCounters, doc.get("counters") or {})),
            "dns": DnsSnapshot.from_json(doc.get("dns")),
            "copies": tuple(doc.get("copies") or ()),
        })


def _known(cls: type, doc: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``doc`` that are fields of ``cls`` (a newer engine may add some)."""
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in doc.items() if k in names}
