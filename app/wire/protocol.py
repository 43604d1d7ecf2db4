"""The helper's socket protocol: versions, verbs, framing limits, where it listens.

One JSON object per line both ways (docs/helper-protocol.md). Requests carry ``v``,
an optional integer ``id`` echoed in the reply, a ``verb`` from :data:`VERBS` and the
verb's arguments; replies are ``{"v", "id", "ok": true, "result"}`` or ``{"v", "id",
"ok": false, "error"}`` (errors.py).
"""

from __future__ import annotations

import json
from typing import Any

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
# move, rules: traffic classes by app (docs/helper-protocol.md, "Classes").
VERBS: tuple[str, ...] = ("hello", "apply", "status", "down", "move", "rules")
MAX_MESSAGE_BYTES = 1 << 20  # one request or reply, newline included
# A connection that sends no complete request for this long is closed (Code.IDLE), except
# the one whose state is in force: its silence is how a steady engine looks, and its
# closing is what starts the grace period. The engine's status poll asks every second.
IDLE_SECONDS = 60.0
DEFAULT_SOCKET = "/run/braid/helper.sock"
DEFAULT_STATE_DIR = "/run/braid/helper-state"


def encode(message: dict[str, Any]) -> bytes:
    """One message as a line."""
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


def request(verb: str, rid: int, **args: Any) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": rid, "verb": verb, **args}


def ok_reply(rid: int | None, result: dict[str, Any]) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": rid, "ok": True, "result": result}
