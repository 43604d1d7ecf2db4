"""Shared test helpers. Tests never sleep a fixed time: they poll for the condition.

    from tests.util import wait_until
    wait_until(lambda: iface_exists("br-x"), timeout=5, message="br-x never appeared")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError, TimeoutError):
    """The condition did not hold in time. Both an AssertionError (a test failure, not an
    error, in pytest's report) and a TimeoutError (for code that catches that)."""


@dataclass
class _Attempts:
    """What polling saw so far, for the message when time runs out."""

    timeout: float
    message: str
    last: object = None
    error: BaseException | None = None
    deadline: float = field(init=False)

    def __post_init__(self) -> None:
        self.deadline = time.monotonic() + self.timeout

    def give_up_if_late(self) -> None:
        if time.monotonic() < self.deadline:
            return
        text = self.message or "condition not met"
        text += f" (waited {self.timeout:g} s; last value {self.last!r}"
        if self.error is not None:
            text += f"; last error {type(self.error).__name__}: {self.error}"
        raise WaitTimeout(text + ")")


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Exceptions listed in ``ignore`` count as "not yet" (a socket that does not exist
    yet, say); others propagate at once. Raises WaitTimeout after ``timeout`` seconds,
    with ``message``, the last value and the last ignored error.
    """
    seen = _Attempts(timeout, message)
    while True:
        try:
            value = predicate()
        except ignore as exc:
            seen.error = exc
        else:
            if value:
                return value
            seen.last = value
        seen.give_up_if_late()
        time.sleep(interval)


async def wait_until_async(
    predicate: Callable[[], T | Awaitable[T]],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str = "",
    ignore: tuple[type[BaseException], ...] = (),
) -> T:
    """The asyncio twin of wait_until: ``predicate`` may be sync or return an awaitable,
    and the loop keeps running between polls."""
    seen = _Attempts(timeout, message)
    while True:
        try:
            result = predicate()
            value: T = await result if isinstance(result, Awaitable) else result
        except ignore as exc:
            seen.error = exc
        else:
            if value:
                return value
            seen.last = value
        seen.give_up_if_late()
        await asyncio.sleep(interval)
