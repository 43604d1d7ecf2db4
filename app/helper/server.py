"""The helper's socket: who may talk, framing, the closed verb set, the grace period."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import grp
import json
import logging
import os
import socket
import stat
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.helper.errors import HelperError
from app.helper.reconcile import Reconciler
from app.wire import protocol
from app.wire.errors import Code
from app.wire.protocol import MAX_MESSAGE_BYTES, SUPPORTED_VERSIONS, VERBS
from app.wire.state import StateError, parse_state

log = logging.getLogger("braid.helper")

HELPER_VERSION = "braid-helper 0.1.0"
MAX_CONNECTIONS = 64  # an idle connection costs little, but not without bound
GROUP_FIX = "run it as root, or add the user to group braid: `sudo usermod -aG braid USER`"


@dataclass(eq=False)
class Conn:
    number: int
    pid: int
    uid: int
    gid: int

    def __str__(self) -> str:
        return f"connection {self.number} (pid {self.pid}, uid {self.uid})"


def peer_credentials(sock: socket.socket) -> tuple[int, int, int]:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return pid, uid, gid


def process_groups(pid: int) -> set[int]:
    """The peer's supplementary groups, as the kernel holds them for that process."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Groups:"):
                return {int(g) for g in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return set()


def group_id(name: str) -> int | None:
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        return None


class HelperServer:
    def __init__(
        self, reconciler: Reconciler, socket_path: Path, grace_seconds: float, group: str
    ) -> None:
        self.reconciler = reconciler
        self.socket_path = socket_path
        self.grace_seconds = grace_seconds
        self.group = group
        self.gid = group_id(group)
        self.owner: Conn | None = None
        self._grace: asyncio.Task[None] | None = None
        self._grace_deadline: float | None = None
        self._server: asyncio.AbstractServer | None = None
        self._count = 0
        self._handlers: set[asyncio.Task[Any]] = set()

    # ---- socket ----------------------------------------------------------------------
    async def start(self) -> None:
        path = self.socket_path
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(path.lstat().st_mode):
                raise HelperError(
                    Code.BAD_SOCKET, f"{path} exists and is not a socket", "choose another --socket"
                )
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                try:
                    probe.connect(str(path))
                except OSError:
                    path.unlink()  # a dead helper's socket
                else:
                    raise HelperError(
                        Code.BAD_SOCKET,
                        f"another braid-helper is serving {path}",
                        "stop it first, or choose another --socket",
                    )
        old_umask = os.umask(0o177)  # never a moment with a world-writable socket
        try:
            self._server = await asyncio.start_unix_server(
                self._serve, str(path), limit=MAX_MESSAGE_BYTES
            )
        finally:
            os.umask(old_umask)
        if self.gid is None:
            log.warning(
                "group %r does not exist: only root may use the helper (create it with "
                "`groupadd --system %s`)",
                self.group,
                self.group,
            )
            os.chmod(path, 0o600)
        else:
            os.chown(path, 0, self.gid)
            os.chmod(path, 0o660)
        log.info("listening on %s", path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._grace is not None:
            self._grace.cancel()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def _allowed(self, pid: int, uid: int, gid: int) -> bool:
        if uid == 0:
            return True
        if self.gid is None:
            return False
        return gid == self.gid or self.gid in process_groups(pid)

    def _refusal(self, conn: Conn) -> HelperError | None:
        """Why this connection may not talk to the helper, if it may not."""
        if len(self._handlers) > MAX_CONNECTIONS:
            log.warning("refused %s: %d connections open", conn, len(self._handlers) - 1)
            return HelperError(
                Code.BUSY,
                f"braid-helper already serves {MAX_CONNECTIONS} connections",
                "close idle clients and retry",
                fatal=True,
            )
        if not self._allowed(conn.pid, conn.uid, conn.gid):
            log.warning("refused connection: %s is not root and not in group %s", conn, self.group)
            return HelperError(
                Code.FORBIDDEN,
                f"uid {conn.uid} may not use braid-helper: only root and members of group "
                f"{self.group} may",
                GROUP_FIX,
                fatal=True,
            )
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        self._count += 1
        pid, uid, gid = peer_credentials(writer.get_extra_info("socket"))
        conn = Conn(self._count, pid, uid, gid)
        try:
            refusal = self._refusal(conn)
            if refusal is not None:
                await self._send(writer, self._error(None, refusal))
                return
            log.debug("%s opened", conn)
            while True:
                try:
                    line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    too_large = HelperError(
                        Code.TOO_LARGE,
                        f"message longer than {MAX_MESSAGE_BYTES} bytes",
                        "send smaller requests; the connection is closed",
                        fatal=True,
                    )
                    await self._send(writer, self._error(None, too_large))
                    return
                if not line:
                    return
                reply = await self._handle(conn, line)
                await self._send(writer, reply)
        except ConnectionError:
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            self._disconnected(conn)
            if task is not None:
                self._handlers.discard(task)

    async def _send(self, writer: asyncio.StreamWriter, reply: dict[str, Any]) -> None:
        writer.write(protocol.encode(reply))
        await writer.drain()

    # ---- requests --------------------------------------------------------------------
    @staticmethod
    def _error(rid: int | None, err: HelperError) -> dict[str, Any]:
        return err.reply().reply(rid)

    async def _handle(self, conn: Conn, line: bytes) -> dict[str, Any]:
        rid: int | None = None
        try:
            try:
                msg = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as exc:
                raise HelperError(
                    Code.BAD_JSON, f"not JSON: {exc}", "send one JSON object per line"
                ) from None
            if not isinstance(msg, dict):
                raise HelperError(Code.BAD_JSON, "a request must be a JSON object")
            raw_id = msg.get("id")
            if raw_id is not None and (not isinstance(raw_id, int) or isinstance(raw_id, bool)):
                raise HelperError(Code.BAD_REQUEST, "id: must be an integer")
            rid = raw_id
            version = msg.get("v")
            if version not in SUPPORTED_VERSIONS:
                raise HelperError(
                    Code.BAD_VERSION,
                    f"protocol version {version!r} is not spoken here",
                    f'send "v": one of {list(SUPPORTED_VERSIONS)}',
                )
            verb = msg.get("verb")
            if verb not in VERBS:
                raise HelperError(
                    Code.UNKNOWN_VERB,
                    f"unknown verb {verb!r}",
                    f"use one of: {', '.join(VERBS)}",
                )
            args = {k: v for k, v in msg.items() if k not in ("v", "id", "verb")}
            result = await getattr(self, f"_verb_{verb}")(conn, args)
        except HelperError as err:
            # A refused field is logged by its path only: its value could be a key pasted
            # into the wrong field, and keys never reach a log.
            shown = err.what.split(":", 1)[0] if err.code == "bad_state" else err.what
            log.info("%s: %s: %s", conn, err.code, shown)
            return self._error(rid, err)
        except Exception:
            # A bug, not a refusal: log it here (never the request: it may hold keys).
            log.exception("%s: internal error", conn)
            bug = HelperError(Code.INTERNAL, "internal error in braid-helper",
                              "see braid-helper's log")
            return self._error(rid, bug)
        return protocol.ok_reply(rid, result)

    @staticmethod
    def _only(args: dict[str, Any], allowed: set[str]) -> None:
        unknown = sorted(set(args) - allowed)
        if unknown:
            raise HelperError(Code.BAD_REQUEST, f"unknown argument {unknown[0]!r}")

    async def _verb_hello(self, conn: Conn, args: dict[str, Any]) -> dict[str, Any]:
        self._only(args, {"versions"})
        offered = args.get("versions", list(SUPPORTED_VERSIONS))
        if not isinstance(offered, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in offered
        ):
            raise HelperError(Code.BAD_REQUEST, "versions: must be a list of integers")
        common = set(offered) & set(SUPPORTED_VERSIONS)
        if not common:
            raise HelperError(
                Code.BAD_VERSION,
                f"no common protocol version (helper speaks {list(SUPPORTED_VERSIONS)})",
                "update braid or braid-helper so that both speak the same version",
            )
        return {
            "version": max(common),
            "versions": list(SUPPORTED_VERSIONS),
            "helper": HELPER_VERSION,
            "backend": self.reconciler.backend.name,
            "grace_seconds": self.grace_seconds,
            "verbs": list(VERBS),
        }

    async def _verb_apply(self, conn: Conn, args: dict[str, Any]) -> dict[str, Any]:
        self._only(args, {"state"})
        if "state" not in args:
            raise HelperError(Code.BAD_REQUEST, "apply needs a state")
        try:
            state = parse_state(args["state"])
        except StateError as exc:
            raise HelperError(
                Code.BAD_STATE, str(exc), "fix that field; nothing was changed"
            ) from None
        self._cancel_grace()
        log.info(
            "%s applies %d tunnels, %d tables, %d rules%s",
            conn,
            len(state.tunnels),
            len(state.tables),
            len(state.rules),
            " (persistent)" if state.persistent else "",
        )
        await self.reconciler.apply(state)
        self.owner = conn
        return await self._status(just_applied=True)

    async def _verb_status(self, conn: Conn, args: dict[str, Any]) -> dict[str, Any]:
        self._only(args, set())
        return await self._status()

    async def _verb_down(self, conn: Conn, args: dict[str, Any]) -> dict[str, Any]:
        self._only(args, set())
        self._cancel_grace()
        log.info("%s: down", conn)
        await self.reconciler.down()
        self.owner = None
        return await self._status()

    async def _status(self, *, just_applied: bool = False) -> dict[str, Any]:
        status = await self.reconciler.status(just_applied=just_applied)
        status = dataclasses.replace(
            status,
            owner_connected=self.owner is not None,
            grace_remaining_s=(
                max(0.0, self._grace_deadline - time.monotonic())
                if self._grace is not None and self._grace_deadline is not None
                else None
            ),
        )
        return status.to_json()

    # ---- grace period ----------------------------------------------------------------
    def _disconnected(self, conn: Conn) -> None:
        log.debug("%s closed", conn)
        if self.owner is not conn:
            return
        self.owner = None
        state = self.reconciler.state
        if state.persistent or not (state.tunnels or state.rules or state.marking):
            return
        log.info("the client that applied the state left; removing it in %gs", self.grace_seconds)
        self._grace_deadline = time.monotonic() + self.grace_seconds
        self._grace = asyncio.get_running_loop().create_task(self._grace_then_down())

    def _cancel_grace(self) -> None:
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
            self._grace_deadline = None

    async def _grace_then_down(self) -> None:
        await asyncio.sleep(self.grace_seconds)
        # From here on a new apply waits for the lock instead of cancelling the down.
        self._grace = None
        self._grace_deadline = None
        log.info("grace period over: removing the state")
        try:
            await self.reconciler.down()
        except HelperError as exc:
            log.error("could not remove the state after the grace period: %s", exc.what)
