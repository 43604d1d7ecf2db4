"""Waiting for a condition while the Qt loop keeps running (drawing, delivering signals)."""

from __future__ import annotations

import time
from collections.abc import Callable

from PySide6.QtCore import QEventLoop, QTimer

from app.core.errors import BraidError


def wait_for(what: str, cond: Callable[[], object], timeout: float) -> None:
    """Run the Qt loop until `cond` holds (no sleeping: the loop keeps drawing)."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise BraidError(f"gave up waiting for {what} after {timeout:g} s",
                             "run with -v and look at the app's log")
        loop = QEventLoop()
        QTimer.singleShot(50, loop.quit)
        loop.exec()
