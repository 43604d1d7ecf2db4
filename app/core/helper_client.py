"""Talking to braid-helper: one long-lived connection, one request at a time.

The protocol (docs/helper-protocol.md) is newline-delimited JSON over a unix socket.
The connection stays open while a state is applied: the helper starts its grace
period (and then removes the state) when the connection that applied it closes.
"""

from __future__ import annotations

import asyncio
import errno
import json
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from app.core.errors import BraidError
from app.helper.state import (
    DEFAULT_SOCKET,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    SUPPORTED_VERSIONS,
    DesiredState,
)

__all__ = [
    "DEFAULT_SOCKET_PATH",
    "HelperClient",
    "HelperStatus",
    "PeerStatus",
    "SyncHelperClient",
    "TunnelStatus",
]

DEFAULT_SOCKET_PATH = Path(DEFAULT_SOCKET)


@dataclass(frozen=True)
class PeerStatus:
    public_key: str
    endpoint: str | None
    handshake_age_s: float | None  # None: never handshaken
    rx_bytes: int
    tx_bytes: int


@dataclass(frozen=True)
class TunnelStatus:
    name: str
    backend: str  # "userspace" | "kernel"
    up: bool  # the link exists and is configured
    pid: int | None  # wireguard-go's pid (userspace backend)
    restarts: int  # times the helper restarted a dead wireguard-go
    handshake_age_s: float | None  # the freshest peer handshake
    rx_bytes: int
    tx_bytes: int
    peers: tuple[PeerStatus, ...]


@dataclass(frozen=True)
class HelperStatus:
    backend: str
    persistent: bool
    owner_connected: bool  # the connection that applied the state is still open
    grace_remaining_s: float | None  # set while the grace period runs
    tunnels: tuple[TunnelStatus, ...]
    tables: tuple[int, ...]
    rules: int
    marking: bool  # the nft table inet braid is loaded
    recovered: tuple[str, ...]  # leftovers found and removed at start

    def tunnel(self, name: str) -> TunnelStatus | None:
        return next((t for t in self.tunnels if t.name == name), None)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> HelperStatus:
        return cls(
            backend=str(doc["backend"]),
            persistent=bool(doc["persistent"]),
            owner_connected=bool(doc["owner_connected"]),
            grace_remaining_s=doc.get("grace_remaining_s"),
            tunnels=tuple(
                TunnelStatus(
                    name=t["name"],
                    backend=t["backend"],
                    up=bool(t["up"]),
                    pid=t.get("pid"),
                    restarts=int(t.get("restarts", 0)),
                    handshake_age_s=t.get("handshake_age_s"),
                    rx_bytes=int(t["rx_bytes"]),
                    tx_bytes=int(t["tx_bytes"]),
                    peers=tuple(PeerStatus(**p) for p in t.get("peers", [])),
                )
                for t in doc["tunnels"]
            ),
            tables=tuple(int(x) for x in doc["tables"]),
            rules=int(doc["rules"]),
            marking=bool(doc["marking"]),
            recovered=tuple(str(x) for x in doc.get("recovered", [])),
        )


def _not_running(path: Path, why: str) -> BraidError:
    return BraidError(
        f"braid-helper is not running: {why} ({path})",
        "start it as root: `systemctl start braid-helper`, or `braid-helper --socket "
        f"{path}`; for a lab, `braid lab up` starts the lab's helper",
    )


class HelperClient:
    """An asyncio client for braid-helper. Not safe to share between event loops."""

    def __init__(self, socket_path: Path = DEFAULT_SOCKET_PATH) -> None:
        self.socket_path = Path(socket_path)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._lock = asyncio.Lock()
        self._next_id = 0

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is not None and self._writer is not None:
            return self._reader, self._writer
        try:
            reader, writer = await asyncio.open_unix_connection(
                str(self.socket_path), limit=MAX_MESSAGE_BYTES
            )
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
        self._reader, self._writer = reader, writer
        return reader, writer

    async def request(self, verb: str, **args: Any) -> dict[str, Any]:
        """Send one request and return its ``result``; BraidError on a refusal."""
        async with self._lock:
            reader, writer = await self._connect()
            self._next_id += 1
            msg = {"v": PROTOCOL_VERSION, "id": self._next_id, "verb": verb, **args}
            data = json.dumps(msg, separators=(",", ":")).encode() + b"\n"
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
                raise BraidError(
                    f"lost the connection to braid-helper: {exc}", "check the helper's log"
                ) from None
            if not line:
                await self._drop()
                raise BraidError(
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
                err = reply.get("error") or {}
                if err.get("fatal"):
                    await self._drop()
                raise BraidError(
                    f"braid-helper refused {verb}: {err.get('what', 'unknown error')}",
                    str(err.get("fix", "")),
                )
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
            writer.close()
            try:
                await writer.wait_closed()
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                    raise

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
