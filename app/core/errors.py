"""The one error type that reaches a user: what was wrong, and what to do about it."""

from __future__ import annotations


class BraidError(Exception):
    """An error a user can act on.

    ``what`` says what was wrong; ``fix`` says what to do. The CLI prints both and
    exits 2; the UI shows both in a dialog. Nothing is changed when one is raised
    before an action is carried out (callers validate first, act second).
    """

    def __init__(self, what: str, fix: str = "") -> None:
        super().__init__(what)
        self.what = what
        self.fix = fix

    def __str__(self) -> str:
        return f"{self.what}\n  what to do: {self.fix}" if self.fix else self.what
