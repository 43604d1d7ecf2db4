"""The helper's own error: a code for programs, what/fix for people (app/wire/errors.py)."""

from __future__ import annotations

from typing import Any

from app.wire.errors import Code, ErrorReply


class HelperError(Exception):
    """A refusal or failure reported to the client as ``{"ok": false, "error": ...}``.

    ``fatal`` errors close the connection (a peer that is not allowed, a message too
    large to resynchronise after).
    """

    def __init__(self, code: Code, what: str, fix: str = "", *, fatal: bool = False) -> None:
        super().__init__(what)
        self.code = code
        self.what = what
        self.fix = fix
        self.fatal = fatal

    def reply(self) -> ErrorReply:
        return ErrorReply(self.code, self.what, self.fix, self.fatal)

    def to_json(self) -> dict[str, Any]:
        return self.reply().to_json()


class KernelError(HelperError):
    """The kernel, nft or wireguard-go refused a change the state asked for."""

    def __init__(self, what: str, fix: str = "see braid-helper's log") -> None:
        super().__init__(Code.FAILED, what, fix)
