"""Wait for a condition by polling it, never by sleeping a guessed time."""

from __future__ import annotations

import time
from collections.abc import Callable

from app.core.errors import BraidError


def wait_until(
    cond: Callable[[], object], timeout: float, what: str, *, interval: float = 0.01
) -> None:
    """Poll ``cond`` until it is truthy; BraidError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return
        if time.monotonic() >= deadline:
            raise BraidError(
                f"timed out after {timeout:g} s waiting for {what}",
                "see the logs under /run/braid/lab/<lab>/log/, then `braid lab down`",
            )
        time.sleep(interval)
