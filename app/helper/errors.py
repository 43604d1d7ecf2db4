"""The helper's own error: a code for programs, what/fix for people (protocol doc)."""

from __future__ import annotations

from typing import Any


class HelperError(Exception):
    """A refusal or failure reported to the client as ``{"ok": false, "error": ...}``.

    ``fatal`` errors close the connection (a peer that is not allowed, a message too
    large to resynchronise after).
    """

    def __init__(self, code: str, what: str, fix: str = "", *, fatal: bool = False) -> None:
        super().__init__(what)
        self.code = code
        self.what = what
        self.fix = fix
        self.fatal = fatal

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "what": self.what, "fix": self.fix, "fatal": self.fatal}


class KernelError(HelperError):
    """The kernel, nft or wireguard-go refused a change the state asked for."""

    def __init__(self, what: str, fix: str = "see braid-helper's log") -> None:
        super().__init__("failed", what, fix)
