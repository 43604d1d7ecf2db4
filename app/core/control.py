"""The engine's control socket: how every view attaches to the one running engine.

One engine per helper (runtime.py); whoever connects first runs it (`braid up` or the
tray app), and every other view — `braid status`, `braid status --watch`, `braid down`,
another tray app, the path window — talks to it here instead of starting a second one.

A unix socket in the user's runtime directory, mode 0600, and every connection is
checked with SO_PEERCRED (the engine's own uid, or root). One JSON object per line:

    {"verb": "hello"}       -> {"ok": true, "result": {"pid", "runner", "profile", "lab"}}
    {"verb": "snapshot"}    -> {"ok": true, "result": <EngineSnapshot.to_json()>}
    {"verb": "watch"}       -> one such snapshot line per publish (10 Hz) until closed
    {"verb": "disconnect"}  -> {"ok": true, "result": {}}, then the engine stops

Bad requests get ``{"ok": false, "error": {"what", "fix"}}``. A watcher that does not
read is dropped rather than buffered without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.errors import BraidError
from app.core.model import EngineSnapshot

log = logging.getLogger(__name__)

MAX_LINE = 1 << 20
WATCH_BUFFER = 1 << 20  # bytes a slow watcher may lag behind before it is dropped
VERBS = ("hello", "snapshot", "watch", "disconnect")


@dataclass(frozen=True)
class EngineInfo:
    pid: int
    runner: str  # "braid up" | "the tray app"
    profile: str
    lab: str | None

    def to_json(self) -> dict[str, Any]:
        return {"pid": self.pid, "runner": self.runner, "profile": self.profile,
                "lab": self.lab}


def _encode(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode() + b"\n"


def _peer_uid(sock: socket.socket) -> int:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", raw)[1])


class ControlServer:
    """Serves one engine's control socket on the engine's loop."""

    def __init__(self, path: Path, info: EngineInfo, snapshot: Callable[[], EngineSnapshot],
                 disconnect: Callable[[], None]) -> None:
        self.path = path
        self.info = info
        self._snapshot = snapshot
        self._disconnect = disconnect
        self._server: asyncio.AbstractServer | None = None
        self._watchers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # the lock (runtime.EngineLock) says no engine owns it
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._serve, str(self.path),
                                                           limit=MAX_LINE)
        finally:
            os.umask(old)

    async def close(self) -> None:
        for w in list(self._watchers):
            w.close()
        self._watchers.clear()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def publish(self, snapshot: EngineSnapshot) -> None:
        """Send ``snapshot`` to every watcher (called by the engine on each publish)."""
        if not self._watchers:
            return
        line = _encode({"ok": True, "result": snapshot.to_json()})
        for w in list(self._watchers):
            transport = w.transport
            if transport.is_closing() or transport.get_write_buffer_size() > WATCH_BUFFER:
                self._watchers.discard(w)
                w.close()
                continue
            w.write(line)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        try:
            uid = _peer_uid(sock)
            if uid not in (0, os.geteuid()):
                writer.write(_encode({"ok": False, "error": {
                    "what": "this engine belongs to another user", "fix": ""}}))
                await writer.drain()
                return
            while True:
                line = await reader.readline()
                if not line:
                    return
                try:
                    msg = json.loads(line)
                    verb = msg.get("verb") if isinstance(msg, dict) else None
                except ValueError:
                    verb = None
                if verb not in VERBS:
                    writer.write(_encode({"ok": False, "error": {
                        "what": f"unknown request {line[:64]!r}",
                        "fix": f"send one of: {', '.join(VERBS)}"}}))
                elif verb == "hello":
                    writer.write(_encode({"ok": True, "result": self.info.to_json()}))
                elif verb == "snapshot":
                    writer.write(_encode({"ok": True,
                                          "result": self._snapshot().to_json()}))
                elif verb == "watch":
                    writer.write(_encode({"ok": True, "result": self._snapshot().to_json()}))
                    self._watchers.add(writer)
                elif verb == "disconnect":
                    writer.write(_encode({"ok": True, "result": {}}))
                    self._disconnect()
                await writer.drain()
        except (ConnectionError, ValueError, asyncio.LimitOverrunError):
            pass
        finally:
            self._watchers.discard(writer)
            writer.close()


class ControlClient:
    """A view's side, synchronous (the CLI, a tray thread)."""

    def __init__(self, path: Path, timeout: float = 5.0) -> None:
        self.path = path
        self.timeout = timeout

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.path))
        except OSError as exc:
            sock.close()
            raise EngineNotRunning(self.path, exc) from None
        return sock

    def _ask(self, verb: str) -> dict[str, Any]:
        with self._connect() as sock:
            sock.sendall(_encode({"verb": verb}))
            return _result(_lines(sock), self.path)

    def hello(self) -> EngineInfo:
        doc = self._ask("hello")
        return EngineInfo(int(doc["pid"]), str(doc["runner"]), str(doc["profile"]),
                          doc.get("lab"))

    def snapshot(self) -> EngineSnapshot:
        return EngineSnapshot.from_json(self._ask("snapshot"))

    def disconnect(self) -> None:
        self._ask("disconnect")

    def answers(self) -> bool:
        try:
            self.hello()
            return True
        except BraidError:
            return False

    def watch(self, stop: Callable[[], bool] = lambda: False) -> Iterator[EngineSnapshot]:
        """Snapshots as the engine publishes them, until it stops or ``stop()``."""
        with self._connect() as sock:
            sock.sendall(_encode({"verb": "watch"}))
            sock.settimeout(1.0)
            lines = _lines(sock, stop)
            while True:
                try:
                    yield EngineSnapshot.from_json(_result(lines, self.path))
                except EngineGone:
                    return


class EngineNotRunning(BraidError):
    def __init__(self, path: Path, exc: OSError | None = None) -> None:
        super().__init__(f"no engine answers on {path}" + (f" ({exc.strerror})" if exc
                                                           and exc.strerror else ""),
                         "connect first: `braid up`, or the tray app")


class EngineGone(BraidError):
    pass


def _lines(sock: socket.socket, stop: Callable[[], bool] = lambda: False) -> Iterator[bytes]:
    buf = b""
    while True:
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            yield line
        if stop():
            return
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            if stop():
                return
            continue
        except OSError:
            return
        if not chunk:
            return
        buf += chunk
        if len(buf) > MAX_LINE:
            return


def _result(lines: Iterator[bytes], path: Path) -> dict[str, Any]:
    line = next(lines, None)
    if line is None:
        raise EngineGone(f"the engine on {path} went away", "see `braid status`")
    try:
        doc = json.loads(line)
    except ValueError:
        raise BraidError(f"{path} answered with something that is not Braid's engine",
                         "remove the stale socket, or set BRAID_RUNTIME_DIR") from None
    if not doc.get("ok"):
        err = doc.get("error") or {}
        raise BraidError(str(err.get("what", "the engine refused")), str(err.get("fix", "")))
    result: dict[str, Any] = doc.get("result") or {}
    return result
