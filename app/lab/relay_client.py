"""Talk to a lab's relay over its control socket (one JSON object per line)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from app.core.errors import BraidError
from app.lab.unixsock import ask


def relay_request(sock_path: Path, request: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    try:
        reply = ask(sock_path, json.dumps(request).encode() + b"\n", b"\n", timeout)
    except OSError as exc:
        raise BraidError(
            f"the lab's relay does not answer on {sock_path}: {exc}",
            "is the lab up? `braid lab status`; if it is broken, `braid lab down` and up again",
        ) from exc
    try:
        doc: dict[str, Any] = json.loads(reply)
    except ValueError as exc:
        raise BraidError(f"the lab's relay sent a bad reply: {reply[:200]!r}",
                         "see /run/braid/lab/<lab>/log/relay.log") from exc
    if not doc.get("ok"):
        raise BraidError(str(doc.get("error", "the relay refused")), str(doc.get("fix", "")))
    return doc


def relay_answers(sock_path: Path) -> bool:
    try:
        relay_request(sock_path, {"op": "ping"}, timeout=1.0)
        return True
    except BraidError:
        return False
