"""Talking to braid-helper: one long-lived connection, one request at a time.

The protocol (docs/helper-protocol.md) is newline-delimited JSON over a unix socket.
The connection stays open while a state is applied: the helper starts its grace
period (and then removes the state) when the connection that applied it closes.
"""

from __future__ import annotations

import asyncio
import errno
import json
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from app.core.errors import BraidError
from app.wire import protocol
from app.wire.errors import Code, ErrorReply
from app.wire.protocol import MAX_MESSAGE_BYTES, SUPPORTED_VERSIONS
from app.wire.state import DesiredState
from app.wire.status import HelperStatus, PeerStatus, TunnelStatus

__all__ = [
    "DEFAULT_SOCKET_PATH",
    "HelperClient",
    "HelperGone",
    "HelperRefused",
    "HelperStatus",
    "PeerStatus",
    "SyncHelperClient",
    "TunnelStatus",
]

DEFAULT_SOCKET_PATH = Path(protocol.DEFAULT_SOCKET)


class HelperRefused(BraidError):
    """The helper answered with an error; ``code`` says which (app/wire/errors.py)."""

    def __init__(self, verb: str, reply: ErrorReply) -> None:
        super().__init__(f"braid-helper refused {verb}: {reply.what}", reply.fix)
        self.code = reply.code
        self.fatal = reply.fatal

    @property
    def transient(self) -> bool:
        return isinstance(self.code, Code) and self.code.transient


class HelperGone(BraidError):
    """No helper answers, or the connection to it was lost: the helper is not running,
    or it restarted (then its state is gone with its old process)."""


def _not_running(path: Path, why: str) -> HelperGone:
    return HelperGone(
        f"braid-helper is not running: {why} ({path})",
        "start it as root: `systemctl start braid-helper`, or `braid-helper --socket "
        f"{path}`; for a lab, `braid lab up` starts the lab's helper",
    )


class _Watched(asyncio.StreamReaderProtocol):
    """A stream protocol that says when the peer closed the connection."""

    def __init__(self, reader: asyncio.StreamReader,
                 lost: Callable[[asyncio.StreamWriter | None], None]) -> None:
        super().__init__(reader)
        self._lost_cb = lost

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self._lost_cb(None)


class HelperClient:
    """An asyncio client for braid-helper. Not safe to share between event loops."""

    def __init__(self, socket_path: Path = DEFAULT_SOCKET_PATH, *,
                 on_lost: Callable[[], None] | None = None) -> None:
        """``on_lost`` is called (on the loop) as soon as the helper closes an open
        connection — it died or restarted — even while no request is in flight."""
        self.socket_path = Path(socket_path)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._next_id = 0
        self._on_lost = on_lost
        self._closing = False

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is not None and self._writer is not None:
            return self._reader, self._writer
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=MAX_MESSAGE_BYTES, loop=loop)
        try:
            transport, protocol = await loop.create_unix_connection(
                lambda: _Watched(reader, self._lost), str(self.socket_path))
        except FileNotFoundError:
            raise _not_running(self.socket_path, "no socket") from None
        except ConnectionRefusedError:
            raise _not_running(self.socket_path, "nobody listens on its socket") from None
        except PermissionError:
            raise BraidError(
                f"not allowed to use braid-helper at {self.socket_path}: only root and "
                "members of group braid may",
                "add yourself to the group (`sudo usermod -aG braid $USER`) and log in again",
            ) from None
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        self._reader, self._writer = reader, writer
        return reader, writer

    def _lost(self, writer: asyncio.StreamWriter | None) -> None:
        if self._closing:
            return
        self._reader = self._writer = None
        if self._on_lost is not None:
            self._on_lost()

    @property
    def connected(self) -> bool:
        return self._writer is not None

    async def request(self, verb: str, **args: Any) -> dict[str, Any]:
        """Send one request and return its ``result``; BraidError on a refusal."""
        async with self._lock:
            reader, writer = await self._connect()
            self._next_id += 1
            data = protocol.encode(protocol.request(verb, self._next_id, **args))
            if len(data) > MAX_MESSAGE_BYTES:
                raise BraidError(
                    f"request to braid-helper too large ({len(data)} bytes)",
                    f"keep a desired state under {MAX_MESSAGE_BYTES} bytes",
                )
            try:
                writer.write(data)
                await writer.drain()
                line = await reader.readline()
            except (ConnectionError, asyncio.LimitOverrunError, ValueError) as exc:
                await self._drop()
                raise HelperGone(
                    f"lost the connection to braid-helper: {exc}", "check the helper's log"
                ) from None
            if not line:
                await self._drop()
                raise HelperGone(
                    "braid-helper closed the connection", "check the helper's log and retry"
                )
            try:
                reply = json.loads(line)
                ok = bool(reply["ok"])
            except (ValueError, TypeError, KeyError):
                await self._drop()
                raise BraidError(
                    f"{self.socket_path} answered with something that is not braid-helper's "
                    "protocol",
                    "check that the socket belongs to braid-helper",
                ) from None
            if not ok:
                err = ErrorReply.from_json(reply.get("error"))
                if err.fatal:
                    await self._drop()
                raise HelperRefused(verb, err)
            result: dict[str, Any] = reply.get("result") or {}
            return result

    async def hello(self) -> dict[str, Any]:
        result = await self.request("hello", versions=list(SUPPORTED_VERSIONS))
        return result

    async def apply(self, state: DesiredState | dict[str, Any]) -> dict[str, Any]:
        doc = state.to_json() if isinstance(state, DesiredState) else state
        return await self.request("apply", state=doc)

    async def status(self) -> HelperStatus:
        return HelperStatus.from_json(await self.request("status"))

    async def down(self) -> None:
        await self.request("down")

    async def _drop(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            self._closing = True
            writer.close()
            try:
                await writer.wait_closed()
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                    raise
            finally:
                self._closing = False

    async def close(self) -> None:
        """Close the connection (starts the helper's grace period for our state)."""
        await self._drop()

    async def __aenter__(self) -> HelperClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


class SyncHelperClient:
    """The same calls for synchronous code (the CLI), on a private event loop."""

    def __init__(self, socket_path: Path = DEFAULT_SOCKET_PATH) -> None:
        self._loop = asyncio.new_event_loop()
        self._client = HelperClient(socket_path)

    def hello(self) -> dict[str, Any]:
        return self._loop.run_until_complete(self._client.hello())

    def apply(self, state: DesiredState | dict[str, Any]) -> dict[str, Any]:
        return self._loop.run_until_complete(self._client.apply(state))

    def status(self) -> HelperStatus:
        return self._loop.run_until_complete(self._client.status())

    def down(self) -> None:
        self._loop.run_until_complete(self._client.down())

    def request(self, verb: str, **args: Any) -> dict[str, Any]:
        return self._loop.run_until_complete(self._client.request(verb, **args))

    def close(self) -> None:
        if not self._loop.is_closed():
            self._loop.run_until_complete(self._client.close())
            self._loop.close()

    def __enter__(self) -> SyncHelperClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
