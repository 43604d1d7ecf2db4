"""One time grid for the engine's periodic timers, so that they share wake-ups.

On the engine's thread a wake-up costs more than the work it does: an event loop woken
every 10 ms costs about 1.2 % of a core doing nothing, and what runs after a 10 ms sleep
runs on cold caches (bench_engine_cost, "the wake-up grid"). Counted on the 3-path lab
with a call on one class, the probes of the busy path (every 10 ms), of two others
(every 50 ms, each on its own phase) and the 10 Hz tick woke the thread about 135 times
a second, where 100 would do: the busy path's probes alone need 100.

So every periodic timer (each path's probe sends, the snapshot tick) is put on the
points of one grid, ``epoch + n * step``. Two timers meant for the same point compute
the same float, so asyncio runs them in one loop iteration, after one sleep. The step
is the largest that every configured period is a multiple of (10 ms for the shipped
probe rates), so a period that is a multiple keeps its exact spacing; any other time
is delayed to the next point, by less than one step. Deadlines that decide a verdict
(liveness.py's silence limits) are not put on the grid: they stay exact.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterable
from dataclasses import dataclass

RESOLUTION_S = 0.001  # periods are compared in whole milliseconds
_SLACK = 1e-6  # of a step: a point recomputed with float noise is the same point


@dataclass(frozen=True)
class Grid:
    epoch: float
    step_s: float

    @classmethod
    def for_periods(cls, epoch: float, periods_s: Iterable[float]) -> Grid:
        """The grid whose step is the greatest common divisor of ``periods_s`` (in
        whole milliseconds, at least one)."""
        step = 0
        for p in periods_s:
            step = math.gcd(step, max(1, round(p / RESOLUTION_S)))
        return cls(epoch, max(step, 1) * RESOLUTION_S)

    def at_or_after(self, t: float) -> float:
        """The first grid point not before ``t`` (a point that ``t`` misses by float
        noise is that point)."""
        n = math.ceil((t - self.epoch) / self.step_s - _SLACK)
        return self.epoch + n * self.step_s


async def sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    """Sleep until loop time ``when`` exactly (``asyncio.sleep`` takes a delay, and
    ``loop.time() + delay`` is not the same float as a timer set for that point)."""
    done = loop.create_future()
    handle = loop.call_at(when, _wake, done)
    try:
        await done
    finally:
        handle.cancel()


def _wake(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
