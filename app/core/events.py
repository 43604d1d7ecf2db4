"""The engine's event log: what happened, in order, each event with its real kind and a
sequence number, so that a view acts on each event once (by ``seq``) instead of
re-deriving what a "switch" was from its fields."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Mapping

from app.core.decide import Decision
from app.core.model import Event, EventKind

log = logging.getLogger("braid.engine")

DECISION_KINDS: Mapping[str, EventKind] = {
    "select": EventKind.PLACED,
    "switch": EventKind.BETTER_PATH,
    "failover": EventKind.FAILOVER,
    "fail_closed": EventKind.BLOCKED,
    "restored": EventKind.RESTORED,
    "evade": EventKind.EVADED,
    "return": EventKind.RETURNED,
}
_LABELS: Mapping[EventKind, str] = {
    EventKind.PLACED: "connected",
    EventKind.BETTER_PATH: "better path",
    EventKind.FAILOVER: "failover",
}


class EventLog:
    """A bounded tail of events, newest last."""

    def __init__(self, size: int) -> None:
        self._events: deque[Event] = deque(maxlen=size)
        self._seq = 0

    def add(self, kind: EventKind, reason: str, *, cls: str | None = None,
            from_path: str | None = None, to_path: str | None = None,
            metrics: Mapping[str, float] | None = None, detection_ms: float | None = None,
            switch_ms: float | None = None, t: float | None = None) -> Event:
        self._seq += 1
        event = Event(t if t is not None else time.time(), kind, cls, from_path, to_path,
                      reason, dict(metrics or {}), detection_ms, switch_ms, self._seq)
        self._events.append(event)
        log.info("%s %s: %s", kind.value, cls or "", reason)
        return event

    def decision(self, d: Decision, *, t: float, detection_s: float | None,
                 switch_ms: float) -> Event:
        kind = DECISION_KINDS[d.kind]
        label = _LABELS.get(kind)
        return self.add(kind, f"{label}: {d.reason}" if label else d.reason, cls=d.cls,
                        from_path=d.from_path, to_path=d.to_path, metrics=d.metrics,
                        detection_ms=None if detection_s is None else detection_s * 1000,
                        switch_ms=round(switch_ms, 3), t=t)

    @property
    def events(self) -> tuple[Event, ...]:
        return tuple(self._events)

    @property
    def seq(self) -> int:
        return self._seq
