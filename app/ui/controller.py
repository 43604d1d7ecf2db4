"""The UI's one link to the engine: snapshots in (from the engine's thread), commands out.

Views never touch the engine; they read the controller's signals and call its methods.
Snapshots are coalesced: the engine thread only stores the newest and wakes the UI
thread once, so a busy UI skips intermediate snapshots instead of queueing a backlog
(each snapshot is complete, and events repeat in later snapshots, so nothing is lost).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal

from app.core import present
from app.core.errors import BraidError
from app.core.model import ConnState, EngineSnapshot
from app.ui.port import EngineControl, SnapshotSink

log = logging.getLogger(__name__)

EngineFactory = Callable[[SnapshotSink], EngineControl[Any]]


def idle_snapshot() -> EngineSnapshot:
    """What the UI shows before the engine has said anything."""
    return EngineSnapshot(
        t=time.time(), state=ConnState.DISCONNECTED, profile=None, paths=(), classes={},
        events=(),
    )


class AppController(QObject):
    snapshot_changed = Signal(object)  # EngineSnapshot, on the UI thread
    notice = Signal(object)  # present.Notice: failover, all paths lost, ...
    error = Signal(object)  # present.UserMessage: for a dialog
    _wake = Signal()

    def __init__(self, make_engine: EngineFactory, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._pending: EngineSnapshot | None = None
        self._events = present.EventTracker(since=time.time())
        self.latest = idle_snapshot()
        self.last_target: Any = None
        self.snapshots_received = 0  # by the engine thread; compare with snapshots_shown
        self.snapshots_shown = 0
        self._shut_down = False
        self._wake.connect(self._drain, Qt.ConnectionType.QueuedConnection)
        self._engine = make_engine(self.on_snapshot)

    # -- from the engine thread -------------------------------------------------------
    def on_snapshot(self, snapshot: EngineSnapshot) -> None:
        """Called by the engine, from its own thread. Must return at once."""
        with self._lock:
            wake = self._pending is None
            self._pending = snapshot
            self.snapshots_received += 1
        if wake:
            self._wake.emit()

    # -- on the UI thread --------------------------------------------------------------
    def _drain(self) -> None:
        with self._lock:
            snapshot, self._pending = self._pending, None
        if snapshot is not None:
            self.apply(snapshot)

    def apply(self, snapshot: EngineSnapshot) -> None:
        """Take a snapshot into the UI: errors, notifications, then every view."""
        previous = self.latest
        self.latest = snapshot
        self.snapshots_shown += 1
        if snapshot.state is ConnState.ERROR and snapshot.error is not None and (
            previous.state is not ConnState.ERROR or previous.error != snapshot.error
        ):
            self.error.emit(present.UserMessage.from_info(snapshot.error))
        for notice in present.notices(self._events.new_events(snapshot), snapshot):
            self.notice.emit(notice)
        if snapshot.state is ConnState.BLOCKED and previous.state is not ConnState.BLOCKED:
            self.notice.emit(present.blocked_notice(snapshot))
        self.snapshot_changed.emit(snapshot)

    def targets(self) -> list[Any]:
        """Profiles to connect to (labs included); an error becomes a dialog."""
        try:
            return list(self._engine.targets())
        except BraidError as exc:
            self.error.emit(present.UserMessage.from_error(exc))
            return []

    def attach_running(self) -> bool:
        """At start: show an engine that already runs (`braid up`), if there is one."""
        try:
            return self._engine.attach_running()
        except BraidError as exc:
            self.error.emit(present.UserMessage.from_error(exc))
            return False

    def request_connect(self, target: Any) -> None:
        self.last_target = target
        try:
            if self.latest.state is not ConnState.DISCONNECTED:
                self._engine.disconnect()
            self._engine.connect(target)
        except BraidError as exc:
            self.error.emit(present.UserMessage.from_error(exc))

    def request_disconnect(self) -> None:
        try:
            self._engine.disconnect()
        except BraidError as exc:
            self.error.emit(present.UserMessage.from_error(exc))

    def shutdown(self, timeout: float = 10.0) -> None:
        """Disconnect and stop the engine; blocks until its tunnels are gone. Idempotent."""
        if self._shut_down:
            return
        self._shut_down = True
        try:
            self._engine.shutdown(timeout)
        except BraidError as exc:
            log.error("engine shutdown: %s", exc)
