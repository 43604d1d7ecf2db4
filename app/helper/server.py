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
from app.wire.classes import parse_move, parse_rules
from app.wire.doc import quote
from app.wire.errors import Code
from app.wire.protocol import IDLE_SECONDS, MAX_MESSAGE_BYTES, SUPPORTED_VERSIONS, VERBS
from app.wire.state import StateError, parse_state

log = logging.getLogger("braid.helper")

HELPER_VERSION = "braid-helper 0.1.0"
MAX_CONNECTIONS = 64  # of non-root peers together: an idle connection costs little, not nothing
MAX_PER_UID = 16  # an engine holds two; the views attach to the engine, not here
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
        self, reconciler: Reconciler, socket_path: Path, grace_seconds: float, group: str,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.reconciler = reconciler
        self.idle_seconds = idle_seconds
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
        self._open: dict[int, int] = {}  # uid -> connections admitted

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
        """Why this connection may not talk to the helper, if it may not. Who it is
        comes first: a refused peer never counts against anyone's limit. Then each uid
        has its own limit, and root is never refused for others' connections, so a
        group member's silent connections cannot lock out root (they are also closed
        after the idle timeout)."""
        if not self._allowed(conn.pid, conn.uid, conn.gid):
            log.warning("refused connection: %s is not root and not in group %s", conn, self.group)
            return HelperError(
                Code.FORBIDDEN,
                f"uid {conn.uid} may not use braid-helper: only root and members of group "
                f"{self.group} may",
                GROUP_FIX,
                fatal=True,
            )
        mine = self._open.get(conn.uid, 0)
        others = sum(n for uid, n in self._open.items() if uid != 0)
        if mine >= MAX_PER_UID or (conn.uid != 0 and others >= MAX_CONNECTIONS):
            log.warning("refused %s: %d of its own connections open, %d in all", conn, mine,
                        others)
            return HelperError(
                Code.BUSY,
                f"braid-helper already serves {mine} connections of uid {conn.uid}"
                if mine >= MAX_PER_UID else
                f"braid-helper already serves {MAX_CONNECTIONS} connections",
                "close idle clients and retry",
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
        admitted = False
        try:
            refusal = self._refusal(conn)
            if refusal is not None:
                await self._send(writer, self._error(None, refusal))
                return
            self._open[uid] = self._open.get(uid, 0) + 1
            admitted = True
            log.debug("%s opened", conn)
            while True:
                # The owner's connection may be silent (a steady engine); any other must
                # send a whole request within the idle timeout.
                idle = None if self.owner is conn else self.idle_seconds
                try:
                    line = await asyncio.wait_for(reader.readline(), idle)
                except TimeoutError:
                    log.info("%s: closed after %gs without a request", conn, self.idle_seconds)
                    await self._send(writer, self._error(None, HelperError(
                        Code.IDLE, f"no request for {self.idle_seconds:g}s",
                        "connect again when there is something to ask", fatal=True)))
                    return
                except (ValueError, asyncio.LimitOverrunError):
                    line = b""
                    too_large = True
                else:
                    too_large = len(line) > MAX_MESSAGE_BYTES
                if too_large:
                    await self._send(writer, self._error(None, HelperError(
                        Code.TOO_LARGE,
                        f"message longer than {MAX_MESSAGE_BYTES} bytes",
                        "send smaller requests; the connection is closed",
                        fatal=True,
                    )))
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
            if admitted:
                self._open[uid] -= 1
                if not self._open[uid]:
                    del self._open[uid]
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
                    Code.BAD_JSON, f"not JSON: {str(exc)[:120]}", "send one JSON object per line"
                ) from None
            except RecursionError:
                raise HelperError(Code.BAD_JSON, "JSON nested too deeply",
                                  "send one flat JSON object per line") from None
            if not isinstance(msg, dict):
                raise HelperError(Code.BAD_JSON, "a request must be a JSON object")
            raw_id = msg.get("id")
            if raw_id is not None and (not isinstance(raw_id, int) or isinstance(raw_id, bool)):
                raise HelperError(Code.BAD_REQUEST, "id: must be an integer")
            rid = raw_id
            version = msg.get("v")
            # true == 1 in Python: a version is an integer, not a boolean.
            if isinstance(version, bool) or not isinstance(version, int) or (
                    version not in SUPPORTED_VERSIONS):
                raise HelperError(
                    Code.BAD_VERSION,
                    f"protocol version {quote(version)} is not spoken here",
                    f'send "v": one of {list(SUPPORTED_VERSIONS)}',
                )
            verb = msg.get("verb")
            if not isinstance(verb, str) or verb not in VERBS:
                raise HelperError(
                    Code.UNKNOWN_VERB,
                    f"unknown verb {quote(verb)}",
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
            raise HelperError(Code.BAD_REQUEST, f"unknown argument {quote(unknown[0])}")

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
            "idle_seconds": self.idle_seconds,
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
        except RecursionError:
            raise HelperError(Code.BAD_STATE, "state: nested too deeply",
                              "send the documented shape; nothing was changed") from None
        self._check_owner(conn)
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
        return await self._status(conn, just_applied=True)

    async def _verb_status(self, conn: Conn, args: dict[str, Any]) -> dict[str, Any]:
        self._only(args, set())
        return await self._status(conn)

    # Classes by app are anyone's who may talk to the helper, each for their own
    # processes: not the owner's only (a user pins an app while their engine runs).
    async def _verb_move(self, conn: Conn, args: dict[str, Any]) -> dict[str, Any]:
        try:
            req = parse_move(args)
        except StateError as exc:
            raise HelperError(Code.BAD_REQUEST, str(exc), "fix that argument; nothing was "
                              "moved") from None
        return self.reconciler.classes.move(conn.uid, req)

    async def _verb_rules(self, conn: Conn, args: dict[str, Any]) -> dict[str, Any]:
        self._only(args, {"rules"})
        if "rules" not in args:
            raise HelperError(Code.BAD_REQUEST, "rules needs rules (a list, [] for none)")
        try:
            rules = parse_rules(args["rules"])
        except StateError as exc:
            raise HelperError(Code.BAD_REQUEST, str(exc), "fix that rule; the rules held "
                              "are unchanged") from None
        return self.reconciler.classes.set_rules(conn.uid, rules)

    def _check_owner(self, conn: Conn) -> None:
        """Only the connection whose state is in force may replace or remove it while it
        is open: another client would take the tunnels (or the guard) from under it.
        Once it has left (grace running, guard held), anyone allowed takes over."""
        owner = self.owner
        if owner is not None and owner is not conn:
            raise HelperError(
                Code.NOT_OWNER,
                f"another client's state is in force (pid {owner.pid}, uid {owner.uid})",
                "disconnect it first (braid down), then retry",
            )

    async def _verb_down(self, conn: Conn, args: dict[str, Any]) -> dict[str, Any]:
        self._only(args, set())
        self._check_owner(conn)
        self._cancel_grace()
        log.info("%s: down", conn)
        await self.reconciler.down()
        self.owner = None
        return await self._status(conn)

    async def _status(self, conn: Conn, *, just_applied: bool = False) -> dict[str, Any]:
        status = await self.reconciler.status(just_applied=just_applied, uid=conn.uid)
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
        if state.persistent or not (state.tunnels or state.rules or state.marking
                                    or state.guard):
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
            await self.reconciler.release()
        except HelperError as exc:
            log.error("could not remove the state after the grace period: %s", exc.what)
