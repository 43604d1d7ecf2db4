"""What the engine publishes: one immutable snapshot per update.

The CLI (`braid status --json`), the tray app and the benchmarks all read these and
nothing else, so the engine is free to change inside as long as this holds.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

# Traffic classes, most important first. The plan's shape carries all of them
# from the start even while only `default` is steered.
CLASSES: tuple[str, ...] = ("realtime", "bulk", "default")


class ConnState(enum.Enum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    CONNECTED = "connected"  # every class has a healthy path
    DEGRADED = "degraded"  # a path is lost or the best path is poor
    FAILING_OVER = "failing_over"  # a switch forced by a dead path is under way
    ERROR = "error"


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


@dataclass(frozen=True)
class Event:
    t: float  # unix time
    kind: str  # "switch" | "down" | "up" | "fail_closed" | "restored" | "error"
    cls: str | None  # traffic class, where it concerns one
    from_path: str | None
    to_path: str | None
    reason: str
    metrics: dict[str, float] = field(default_factory=dict)
    detection_ms: float | None = None  # from the last good probe to declared down
    switch_ms: float | None = None  # from decision to rules in the kernel


@dataclass(frozen=True)
class EngineSnapshot:
    t: float
    state: ConnState
    profile: str | None
    paths: tuple[PathSnapshot, ...]
    classes: dict[str, tuple[str, ...]]  # class -> paths carrying it, best first
    events: tuple[Event, ...]  # most recent last, bounded
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["state"] = self.state.value
        doc["classes"] = {k: list(v) for k, v in self.classes.items()}
        return doc
