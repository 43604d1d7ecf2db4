"""Fixtures for the engine's integration tests: a real lab per test, an engine on it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from app.core.decide import DecideConfig
from app.core.engine import EngineConfig
from app.core.model import EngineSnapshot, Event, EventKind
from app.core.service import EngineService
from app.core.targets import ConnectTarget
from app.lab.topology import LabInfo
from tests.util import wait_until

# Fast decisions so that hold-downs and dwell times fit in a test.
TEST_DECIDE = DecideConfig(margin=0.1, dwell_s=1.0, hold_down_s=3.0, warmup_s=2.0)
TEST_CONFIG = EngineConfig(decide=TEST_DECIDE)


@dataclass
class Recorder:
    """Collects snapshots from the engine thread."""

    snaps: list[EngineSnapshot] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, snap: EngineSnapshot) -> None:
        with self.lock:
            self.snaps.append(snap)
            del self.snaps[:-50]

    @property
    def last(self) -> EngineSnapshot | None:
        with self.lock:
            return self.snaps[-1] if self.snaps else None

    def events(self, *kinds: EventKind) -> list[Event]:
        snap = self.last
        if snap is None:
            return []
        return [e for e in snap.events if not kinds or e.kind in kinds]

    def carrier(self, cls: str = "default") -> str | None:
        snap = self.last
        if snap is None or not snap.classes.get(cls):
            return None
        return snap.classes[cls][0]


@dataclass
class Connected:
    lab: LabInfo
    service: EngineService
    rec: Recorder

    def active(self) -> tuple[str, int]:
        """Once connected: class default's path, and its index in the snapshots' paths."""
        wait_until(lambda: self.rec.last is not None and
                   self.rec.last.state.value == "connected", timeout=20)
        active, last = self.rec.carrier(), self.rec.last
        assert active is not None and last is not None
        return active, [p.name for p in last.paths].index(active)


@pytest.fixture
def connect() -> Iterator[Callable[..., Connected]]:
    services: list[EngineService] = []

    def go(lab: LabInfo, config: EngineConfig = TEST_CONFIG) -> Connected:
        rec = Recorder()
        svc = EngineService(rec, config=config)
        services.append(svc)
        svc.connect(ConnectTarget.for_lab(lab.name))
        wait_until(lambda: rec.carrier() is not None, timeout=20,
                   message=f"engine never chose a path: {rec.last}")
        return Connected(lab, svc, rec)

    yield go
    for svc in services:
        svc.shutdown()
