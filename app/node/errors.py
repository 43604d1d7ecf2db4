"""The node roles' error: what went wrong and what to do, for the person at the node."""

from __future__ import annotations


class NodeError(Exception):
    def __init__(self, what: str, fix: str = "") -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.what}; {self.fix}" if self.fix else self.what
