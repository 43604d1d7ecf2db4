"""EngineService: one engine on a thread of its own, with its own asyncio loop.

Safe to call from any thread (the tray app's UI thread, the CLI's main thread):
``connect`` and ``disconnect`` return at once; results arrive as snapshots through
``on_snapshot``, which is called from the engine thread (at 10 Hz while connected).

For a lab target the engine thread enters the lab's client namespace
(``braid-<lab>-client``) before it opens a socket: network namespaces are per thread,
so the rest of the process stays where it is. The profile and its keys are read
before that, so the keyring's D-Bus connection is made from the caller's namespace.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.core.engine import Engine, EngineConfig
from app.core.errors import BraidError
from app.core.helper_client import DEFAULT_SOCKET_PATH
from app.core.model import ConnState, EngineSnapshot
from app.core.netns import enter_netns
from app.core.profiles.model import GatewaySecrets, Profile
from app.core.profiles.store import ProfileStore
from app.core.targets import ConnectTarget, Placement, placement

log = logging.getLogger(__name__)

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


def _idle_snapshot(state: ConnState, profile: str | None, error: str | None) -> EngineSnapshot:
    return EngineSnapshot(t=time.time(), state=state, profile=profile, paths=(), classes={},
                          events=(), error=error)


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
    """One engine on its own thread with its own asyncio loop; safe to call from the UI
    thread."""

    def __init__(
        self,
        on_snapshot: Callable[[EngineSnapshot], None],
        *,
        config: EngineConfig | None = None,
        store: ProfileStore | None = None,
        helper_socket: Path = DEFAULT_SOCKET_PATH,
    ) -> None:
        self._on_snapshot = on_snapshot
        self.config = config or EngineConfig()
        self._store = store
        self._helper_socket = helper_socket
        self._session: _Session | None = None
        self._lock = threading.Lock()
        self.last_engine: Engine | None = None  # for benchmarks: apply times and the like

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

    def wait_stopped(self, timeout: float | None = None) -> bool:
        """Wait for the current connection's thread to end (after an error, say)."""
        session = self._session
        if session is None or session.thread is None:
            return True
        session.thread.join(timeout)
        return not session.thread.is_alive()

    def targets(self) -> list[ConnectTarget]:
        """Saved profiles; a lab's profile comes with its lab set."""
        store = self.store
        out = []
        for name in store.names():
            try:
                lab = store.load(name).lab
            except BraidError:
                lab = None
            out.append(ConnectTarget(name, lab))
        return out

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
        self._emit(_idle_snapshot(ConnState.CONNECTING, target.profile, None))
        try:
            prepared = prepare(target, self.store, self._helper_socket)
            where = prepared.placement
            if where.netns is not None:
                enter_netns(where.netns)
            engine = Engine(prepared.profile, prepared.secrets, where.helper_socket,
                            self._emit, probe_targets=where.probe_targets,
                            config=self.config)
            self.last_engine = engine
            asyncio.run(self._main(engine, session))
        except BraidError as exc:
            self._emit(_idle_snapshot(ConnState.ERROR, target.profile, str(exc)))
            return
        except Exception as exc:  # a bug: say so rather than die silently on a thread
            log.exception("engine failed")
            self._emit(_idle_snapshot(ConnState.ERROR, target.profile,
                                      f"internal error: {type(exc).__name__}: {exc}"))
            return
        self._emit(_idle_snapshot(ConnState.DISCONNECTED, target.profile, None))

    async def _main(self, engine: Engine, session: _Session) -> None:
        stop = asyncio.Event()
        session.bind(asyncio.get_running_loop(), stop)
        await engine.run(stop)
