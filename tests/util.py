"""Shared test helpers. Tests never sleep a fixed time: they poll for the condition.

    from tests.util import wait_until
    wait_until(lambda: iface_exists("br-x"), timeout=5, message="br-x never appeared")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
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


def wg_keypair() -> tuple[str, str]:
    """A real WireGuard (private, public) key pair from `wg genkey | wg pubkey`."""
    private = subprocess.run(["wg", "genkey"], check=True, capture_output=True,
                             text=True).stdout.strip()
    public = subprocess.run(["wg", "pubkey"], input=private, check=True, capture_output=True,
                            text=True).stdout.strip()
    return private, public


def wg_psk() -> str:
    """A real preshared key from `wg genpsk`."""
    return subprocess.run(["wg", "genpsk"], check=True, capture_output=True,
                          text=True).stdout.strip()


def unique_name(prefix: str = "t", length: int = 4) -> str:
    """A name no other test (or engineer) running now will pick: prefix + [a-z0-9]."""
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    return prefix + "".join(random.SystemRandom().choice(alphabet) for _ in range(length))


@contextlib.contextmanager
def root_logging_restored() -> Iterator[None]:
    """Undo what a logging set-up (app.core.logs.setup) does to the root logger: the
    handlers it added are removed and closed, the levels put back."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    pyroute2 = logging.getLogger("pyroute2").level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                root.removeHandler(handler)
                handler.close()
        root.setLevel(level)
        logging.getLogger("pyroute2").setLevel(pyroute2)
