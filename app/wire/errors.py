"""Error codes a client acts on, and the error reply that carries one.

The code is for programs (the engine retries a ``failed`` apply, reconnects after a
fatal one, stops on ``bad_state``: a bug in what it sent); ``what`` and ``fix`` are for
people. See docs/helper-protocol.md, "Errors".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from app.wire.protocol import PROTOCOL_VERSION


class Code(enum.StrEnum):
    FORBIDDEN = "forbidden"  # the peer is not root and not in group braid (fatal)
    TOO_LARGE = "too_large"  # a message over the limit (fatal)
    BUSY = "busy"  # too many connections (fatal)
    IDLE = "idle"  # a connection that said nothing for too long (fatal)
    BAD_JSON = "bad_json"
    BAD_VERSION = "bad_version"
    UNKNOWN_VERB = "unknown_verb"
    BAD_REQUEST = "bad_request"
    BAD_STATE = "bad_state"  # a field of the state is wrong; nothing changed
    NOT_OWNER = "not_owner"  # another client's state is in force and its client is there
    FAILED = "failed"  # the kernel refused a change; rolled back
    INTERNAL = "internal"  # a bug in the helper; rolled back
    NO_CLASSES = "no_classes"  # move: no class groups (not connected, or no cgroup v2)
    NO_PROCESS = "no_process"  # move: no such process (it may have exited)
    NOT_YOURS = "not_yours"  # move: another user's process (only root may move it)
    NO_BACKEND = "no_backend"  # no WireGuard available (start-up only)
    BAD_SOCKET = "bad_socket"  # the socket path is in use (start-up only)
    BAD_STATE_DIR = "bad_state_dir"  # --state-dir is a symlink or not root's (start-up only)

    @property
    def transient(self) -> bool:
        """Worth retrying the same request later: the kernel or the helper's own state
        may change; a refused field will not."""
        return self in (Code.FAILED, Code.INTERNAL, Code.NOT_OWNER, Code.BUSY)


@dataclass(frozen=True)
class ErrorReply:
    code: Code | str  # a code this side does not know stays a string
    what: str
    fix: str = ""
    fatal: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"code": str(self.code), "what": self.what, "fix": self.fix,
                "fatal": self.fatal}

    @classmethod
    def from_json(cls, doc: Any) -> ErrorReply:
        if not isinstance(doc, dict):
            return cls(Code.INTERNAL, "the helper's error reply is malformed")
        raw = str(doc.get("code", Code.INTERNAL.value))
        code: Code | str = Code(raw) if raw in Code._value2member_map_ else raw
        return cls(code, str(doc.get("what", "unknown error")), str(doc.get("fix", "")),
                   bool(doc.get("fatal", False)))

    def reply(self, rid: int | None) -> dict[str, Any]:
        return {"v": PROTOCOL_VERSION, "id": rid, "ok": False, "error": self.to_json()}
