"""Running an engine, or attaching to the one that runs: what the CLI and the tray use.

- ``EngineService``: one engine on a thread of its own with its own asyncio loop, and
  its control socket (control.py) so that every other view can attach. Safe to call
  from any thread: ``connect`` and ``disconnect`` return at once; results arrive as
  snapshots through ``on_snapshot``, called from the engine thread (10 Hz).
- ``AttachedEngine``: a view of an engine another process runs (`braid up`, another
  tray), fed by its control socket.
- ``EngineHub``: what the tray app drives: connecting to a target whose engine already
  runs attaches to it; otherwise it runs one itself. One engine per helper, many views.

For a lab target the engine thread enters the lab's client namespace before it opens a
socket (namespaces are per thread, so the rest of the process stays where it is). The
profile and its keys are read before that, so the keyring's D-Bus connection is made
from the caller's namespace. The control socket is a filesystem socket: namespaces do
not matter to it.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from app.core import runtime
from app.core.control import ControlClient, ControlServer, EngineInfo
from app.core.engine import Engine, EngineConfig
from app.core.errors import BraidError
from app.core.helper_client import DEFAULT_SOCKET_PATH, SyncHelperClient
from app.core.model import ConnState, EngineSnapshot, ErrorInfo
from app.core.netns import enter_netns
from app.core.profiles.model import GatewaySecrets, Profile
from app.core.profiles.store import ProfileStore
from app.core.targets import ConnectTarget, Placement, placement
from app.wire.status import GuardStatus

log = logging.getLogger(__name__)

OnSnapshot = Callable[[EngineSnapshot], None]


@dataclass(frozen=True)
class Prepared:
    """Everything read before the engine thread changes namespace."""

    profile: Profile
    secrets: dict[str, GatewaySecrets]
    placement: Placement


def prepare(target: ConnectTarget, store: ProfileStore, helper_socket: Path) -> Prepared:
    """Load the profile, its keys and where it runs; BraidError if any is missing.
    Changes nothing."""
    profile = store.load(target.profile)
    where = placement(target, profile, helper_socket)
    return Prepared(profile, store.load_secrets(profile), where)


def idle_snapshot(state: ConnState, profile: str | None, error: ErrorInfo | None = None,
                  *, lab: str | None = None) -> EngineSnapshot:
    return EngineSnapshot(t=time.time(), state=state, profile=profile, paths=(), classes={},
                          events=(), error=error, lab=lab)


def _name_os_thread(name: str) -> None:
    """Give the calling thread its name in the OS too (top -H, /proc/*/task/*/comm)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


class _Session:
    """One connection: its thread, and a thread-safe way to stop its loop."""

    def __init__(self, target: ConnectTarget) -> None:
        self.target = target
        self.thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._cancelled = False

    def bind(self, loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        with self._lock:
            self._loop, self._stop = loop, stop
            if self._cancelled:
                stop.set()

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._loop is not None and self._stop is not None and not self._loop.is_closed():
                self._loop.call_soon_threadsafe(self._stop.set)

    @property
    def cancelled(self) -> bool:
        return self._cancelled


class EngineService:
    """One engine on its own thread with its own asyncio loop, serving its control
    socket; safe to call from the UI thread."""

    def __init__(
        self,
        on_snapshot: OnSnapshot,
        *,
        config: EngineConfig | None = None,
        store: ProfileStore | None = None,
        helper_socket: Path = DEFAULT_SOCKET_PATH,
        runner: str = "the tray app",
        serve_control: bool = True,
    ) -> None:
        self._on_snapshot = on_snapshot
        self.config = config or EngineConfig()
        self._store = store
        self._helper_socket = helper_socket
        self.runner = runner
        self.serve_control = serve_control
        self._session: _Session | None = None
        self._lock = threading.Lock()

    @property
    def store(self) -> ProfileStore:
        return self._store or ProfileStore()

    def connect(self, target: ConnectTarget) -> None:
        """Start connecting to ``target`` (after ending any current connection)."""
        with self._lock:
            old = self._session
            if old is not None:
                old.cancel()
            session = _Session(target)
            self._session = session
            thread = threading.Thread(target=self._run, args=(session, old),
                                      name=f"braid-engine-{target.profile}", daemon=True)
            session.thread = thread
            thread.start()

    def disconnect(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.cancel()

    def shutdown(self, timeout: float = 10.0) -> None:
        """Disconnect, wait for the tunnels to go down, join the thread."""
        with self._lock:
            session, self._session = self._session, None
        if session is None:
            return
        session.cancel()
        if session.thread is not None:
            session.thread.join(timeout)
            if session.thread.is_alive():
                log.warning("engine thread did not stop within %.1f s", timeout)

    @property
    def running(self) -> bool:
        session = self._session
        return session is not None and session.thread is not None and \
            session.thread.is_alive()

    def targets(self) -> list[ConnectTarget]:
        """Saved profiles; a lab's profile comes with its lab set."""
        return saved_targets(self.store)

    # -- the engine thread --------------------------------------------------------

    def _emit(self, snap: EngineSnapshot) -> None:
        try:
            self._on_snapshot(snap)
        except Exception:
            log.exception("snapshot subscriber failed")

    def _run(self, session: _Session, previous: _Session | None) -> None:
        _name_os_thread("braid-engine")
        if previous is not None and previous.thread is not None:
            previous.thread.join()  # one engine at a time: its tunnels go down first
        target = session.target
        if session.cancelled:
            return
        self._emit(idle_snapshot(ConnState.CONNECTING, target.profile, lab=target.lab))
        lock: runtime.EngineLock | None = None
        try:
            if self.serve_control:
                lock = runtime.EngineLock(runtime.files_for(target))
                lock.acquire()
            prepared = prepare(target, self.store, self._helper_socket)
            where = prepared.placement
            if where.netns is not None:
                enter_netns(where.netns)
            sinks: list[OnSnapshot] = [self._emit]

            def publish(snap: EngineSnapshot) -> None:
                for sink in sinks:
                    sink(snap)

            engine = Engine(prepared.profile, prepared.secrets, where.helper_socket, publish,
                            probe_targets=where.probe_targets,
                            config=self.config, lab=target.lab, runner=self.runner,
                            netns=where.netns)
            asyncio.run(self._main(engine, session, lock, sinks))
        except BraidError as exc:
            self._emit(idle_snapshot(ConnState.ERROR, target.profile, ErrorInfo.of(exc),
                                     lab=target.lab))
            return
        except Exception as exc:  # a bug: say so rather than die silently on a thread
            log.exception("engine failed")
            self._emit(idle_snapshot(ConnState.ERROR, target.profile, ErrorInfo.of(exc),
                                     lab=target.lab))
            return
        finally:
            if lock is not None:
                lock.release()
        self._emit(idle_snapshot(ConnState.DISCONNECTED, target.profile, lab=target.lab))

    async def _main(self, engine: Engine, session: _Session,
                    lock: runtime.EngineLock | None, sinks: list[OnSnapshot]) -> None:
        stop = asyncio.Event()
        session.bind(asyncio.get_running_loop(), stop)
        server: ControlServer | None = None
        if lock is not None:
            info = EngineInfo(os.getpid(), self.runner, engine.profile.name, session.target.lab)
            server = ControlServer(lock.files.socket_path, info, engine.snapshot, stop.set)
            await server.start()
            sinks.append(server.publish)
        try:
            await engine.run(stop)
        finally:
            if server is not None:
                await server.close()


def saved_targets(store: ProfileStore) -> list[ConnectTarget]:
    out = []
    for name in store.names():
        try:
            lab = store.load(name).lab
        except BraidError:
            lab = None
        out.append(ConnectTarget(name, lab))
    return out


def running_engine(target: ConnectTarget) -> EngineInfo | None:
    """The engine running for ``target``'s helper, if one answers."""
    try:
        files = runtime.files_for(target)
    except BraidError:
        return None
    try:
        return ControlClient(files.socket_path, timeout=2.0).hello()
    except BraidError:
        return None


class AttachedEngine:
    """A view of an engine another process runs, through its control socket."""

    def __init__(self, socket_path: Path, on_snapshot: OnSnapshot, profile: str,
                 lab: str | None) -> None:
        self.client = ControlClient(socket_path)
        self._on_snapshot = on_snapshot
        self.profile, self.lab = profile, lab
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._follow, name="braid-attached",
                                       daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _follow(self) -> None:
        try:
            for snap in self.client.watch(self._stop.is_set):
                self._on_snapshot(snap)
        except BraidError as exc:
            log.info("attached engine: %s", exc)
        if not self._stop.is_set():
            # The engine went away (disconnected, or it died): say so.
            self._on_snapshot(idle_snapshot(ConnState.DISCONNECTED, self.profile,
                                            lab=self.lab))

    def disconnect(self) -> None:
        self.client.disconnect()

    def detach(self, timeout: float = 3.0) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout)


def held_guard(target: ConnectTarget, store: ProfileStore) -> GuardStatus | None:
    """The kill switch a helper still holds for a client that left (its grace period
    over, or adopted after a restart), if ``target``'s helper holds one."""
    try:
        where = placement(target, store.load(target.profile))
        with SyncHelperClient(where.helper_socket) as helper:
            status = helper.status()
    except BraidError:
        return None
    guard = status.guard
    if guard is None or status.owner_connected or guard.held is None:
        return None
    return guard


BLOCKED_ERROR = ErrorInfo(
    "Braid's kill switch is blocking all traffic: the app that connected went away "
    "without disconnecting",
    "connect to resume, or disconnect to let traffic out without the VPN")


class EngineHub:
    """The tray's engine: attaches to the engine of a target that is already up, runs
    one itself otherwise. Quit detaches from an engine it did not start (that engine
    stays connected) and stops one it did. While no engine runs it watches the helpers
    for a kill switch left holding (the client died): the tray then says traffic is
    blocked, and Disconnect releases it."""

    WATCH_S = 2.0

    def __init__(self, on_snapshot: OnSnapshot, *, config: EngineConfig | None = None,
                 store: ProfileStore | None = None, runner: str = "the tray app") -> None:
        self._on_snapshot = on_snapshot
        self.local = EngineService(on_snapshot, config=config, store=store, runner=runner)
        self.attached: AttachedEngine | None = None
        self._lock = threading.Lock()
        self.blocked: ConnectTarget | None = None
        self._closing = threading.Event()
        self._watcher = threading.Thread(target=self._watch_blocks, name="braid-blocked",
                                         daemon=True)
        self._watcher.start()

    def _idle(self) -> bool:
        return self.attached is None and not self.local.running

    def check_blocked(self) -> ConnectTarget | None:
        """Look for a held kill switch now; say so (or that it cleared)."""
        found = None
        if self._idle():
            store = self.local.store
            found = next((t for t in saved_targets(store) if held_guard(t, store)), None)
        if found != self.blocked and self._idle():
            self.blocked = found
            if found is not None:
                snap = replace(idle_snapshot(ConnState.BLOCKED, found.profile, BLOCKED_ERROR,
                                             lab=found.lab), blocked=True)
            else:
                snap = idle_snapshot(ConnState.DISCONNECTED, None)
            self._on_snapshot(snap)
        return found

    def _watch_blocks(self) -> None:
        while not self._closing.wait(self.WATCH_S):
            try:
                self.check_blocked()
            except Exception:  # a view's watcher must never take the app down
                log.exception("watching for a held kill switch")

    def _attach(self, target: ConnectTarget, info: EngineInfo) -> None:
        self._detach()
        view = AttachedEngine(runtime.files_for(target).socket_path, self._on_snapshot,
                              info.profile, info.lab)
        self.attached = view
        view.start()

    def _detach(self) -> None:
        view, self.attached = self.attached, None
        if view is not None:
            view.detach()

    def attach_running(self, targets: list[ConnectTarget] | None = None) -> bool:
        """At start: show the engine that already runs, if there is one (or a kill
        switch a dead one left holding)."""
        for target in targets if targets is not None else self.targets():
            info = running_engine(target)
            if info is not None and info.profile == target.profile:
                with self._lock:
                    self._attach(target, info)
                return True
        self.check_blocked()
        return False

    def connect(self, target: ConnectTarget) -> None:
        with self._lock:
            info = running_engine(target)
            if info is not None and info.pid != os.getpid():
                if info.profile != target.profile:
                    raise BraidError(
                        f"{info.runner} (pid {info.pid}) is connected to {info.profile} "
                        "through the same helper", "disconnect it first")
                self._attach(target, info)
                return
            self._detach()
            self.blocked = None
            self.local.connect(target)

    def disconnect(self) -> None:
        with self._lock:
            if self.attached is not None:
                self.attached.disconnect()
            elif self.local.running:
                self.local.disconnect()
            elif self.blocked is not None:
                self._release(self.blocked)

    def _release(self, target: ConnectTarget) -> None:
        """Disconnect with no engine: the helper removes the kill switch it held."""
        where = placement(target, self.local.store.load(target.profile))
        with SyncHelperClient(where.helper_socket) as helper:
            helper.down()
        self.blocked = None
        self._on_snapshot(idle_snapshot(ConnState.DISCONNECTED, target.profile,
                                        lab=target.lab))

    def shutdown(self, timeout: float = 10.0) -> None:
        self._closing.set()
        with self._lock:
            self._detach()
        self.local.shutdown(timeout)

    def targets(self) -> list[ConnectTarget]:
        return self.local.targets()
