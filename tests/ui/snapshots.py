"""Real EngineSnapshot objects for the view tests, and a stand-in engine that records
the commands it is sent (the real EngineService is used by test_integration)."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field

from PySide6.QtCore import QCoreApplication, QEvent

from app.core.errors import BraidError
from app.core.model import ConnState, EngineSnapshot, ErrorInfo, Event, EventKind, PathSnapshot
from app.ui.app import BraidApp
from app.ui.port import SnapshotSink


def path(
    name: str,
    rtt: float | None = 100.0,
    *,
    up: bool = True,
    loss: float = 0.0,
    score: float = 0.8,
    classes: tuple[str, ...] = (),
    jitter: float | None = 2.0,
) -> PathSnapshot:
    return PathSnapshot(
        name=name, interface=f"br-{name}", up=up, suspected=False, rtt_ms=rtt,
        rtt_smoothed_ms=rtt, rtt_p50_ms=rtt, rtt_p95_ms=None if rtt is None else rtt * 1.2,
        jitter_ms=jitter, loss=loss, score=score, cost=1.0, handshake_age_s=5.0,
        rx_bps=0.0, tx_bps=0.0, classes=classes,
    )


def snap(
    state: ConnState = ConnState.CONNECTED,
    paths: tuple[PathSnapshot, ...] = (),
    classes: dict[str, tuple[str, ...]] | None = None,
    events: tuple[Event, ...] = (),
    *,
    t: float | None = None,
    profile: str | None = "lab-t1",
    error: ErrorInfo | None = None,
    pid: int | None = 4242,
) -> EngineSnapshot:
    return EngineSnapshot(
        t=time.time() if t is None else t, state=state, profile=profile, paths=paths,
        classes=classes if classes is not None else {}, events=events, error=error, pid=pid,
    )


def three_paths(active: str = "hk", *, t: float | None = None) -> EngineSnapshot:
    """A healthy connection over hk, tk and sg with `default` on `active`."""
    paths = tuple(
        path(n, rtt, classes=("default",) if n == active else ())
        for n, rtt in (("hk", 60.0), ("tk", 80.0), ("sg", 95.0))
    )
    return snap(paths=paths, classes={"default": (active,)}, t=t)


_SEQ = itertools.count(1)


def event(kind: EventKind, reason: str, *, t: float | None = None, cls: str | None = None,
          frm: str | None = None, to: str | None = None) -> Event:
    """An event as the engine numbers them: each one a higher ``seq``."""
    return Event(t=time.time() if t is None else t, kind=kind, cls=cls, from_path=frm,
                 to_path=to, reason=reason, seq=next(_SEQ))


def switch(frm: str, to: str, *, t: float | None = None, cls: str = "default",
           kind: EventKind = EventKind.FAILOVER) -> Event:
    return Event(
        t=time.time() if t is None else t, kind=kind, cls=cls, from_path=frm,
        to_path=to, reason=f"{frm} declared down: no reply to 3 probes",
        detection_ms=180.0, switch_ms=2.5, seq=next(_SEQ),
    )


@dataclass(frozen=True)
class Target:
    profile: str
    lab: str | None = None


@dataclass
class RecordingEngine:
    """Records commands; the test pushes snapshots through `sink` as the engine would."""

    sink: SnapshotSink
    available: list[Target] = field(
        default_factory=lambda: [Target("lab-t1", "t1"), Target("office")]
    )
    calls: list[tuple[str, object]] = field(default_factory=list)
    targets_error: BraidError | None = None

    def connect(self, target: Target) -> None:
        self.calls.append(("connect", target))

    def disconnect(self) -> None:
        self.calls.append(("disconnect", None))

    def shutdown(self, timeout: float = 10.0) -> None:
        self.calls.append(("shutdown", timeout))

    def targets(self) -> list[Target]:
        if self.targets_error is not None:
            raise self.targets_error
        return list(self.available)

    def attach_running(self) -> bool:
        self.calls.append(("attach_running", None))
        return False


class EngineBox:
    """A factory for AppController that keeps the engine it made, for the test to use."""

    def __init__(self) -> None:
        self.engine: RecordingEngine | None = None

    def __call__(self, sink: SnapshotSink) -> RecordingEngine:
        self.engine = RecordingEngine(sink)
        return self.engine

    @property
    def e(self) -> RecordingEngine:
        assert self.engine is not None
        return self.engine


def dispose(braid: BraidApp) -> None:
    """Delete the app's Qt objects now, so no test's windows outlive it."""
    braid.errors.close_all()
    if braid.tray is not None:
        braid.tray.hide()
    for widget in (braid.graph, braid.window, braid.menu, braid.log_view, braid.apps,
                   braid.settings):
        if widget is not None:
            widget.close()
            widget.deleteLater()
    braid.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
