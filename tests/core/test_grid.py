"""The engine's timer grid (grid.py): periods that share wake-ups."""

from __future__ import annotations

import asyncio

from app.core.grid import Grid, sleep_until


def test_the_step_is_what_every_period_is_a_multiple_of() -> None:
    assert Grid.for_periods(0.0, (0.010, 0.050, 0.020, 0.200)).step_s == 0.010
    assert Grid.for_periods(0.0, (0.015, 0.050)).step_s == 0.005
    assert Grid.for_periods(0.0, (0.0101,)).step_s == 0.010  # whole milliseconds
    assert Grid.for_periods(0.0, ()).step_s == 0.001


def test_points_recomputed_from_any_path_are_the_same_float() -> None:
    g = Grid(1234.567, 0.010)
    by_tens = by_fifties = g.at_or_after(g.epoch)
    for _ in range(1000):  # the busy path's probes, and a path at five times its period
        by_tens = g.at_or_after(by_tens + 0.010)
    for _ in range(200):
        by_fifties = g.at_or_after(by_fifties + 0.050)
    assert by_tens == by_fifties  # one timer, one wake-up
    assert abs(by_tens - (g.epoch + 10.0)) < 1e-9


def test_a_time_off_the_grid_waits_for_the_next_point_less_than_a_step() -> None:
    g = Grid(100.0, 0.010)
    assert g.at_or_after(100.0) == 100.0
    assert g.at_or_after(100.0031) == g.epoch + 1 * g.step_s
    assert g.at_or_after(100.0099) == g.epoch + 1 * g.step_s
    assert g.at_or_after(99.995) == 100.0
    for t in (100.0001, 100.004, 100.0099999):
        assert 0 <= g.at_or_after(t) - t < g.step_s


def test_sleep_until_wakes_at_that_point_with_timers_set_for_it() -> None:
    async def go() -> list[str]:
        loop = asyncio.get_running_loop()
        g = Grid(loop.time(), 0.010)
        when = g.at_or_after(loop.time() + 0.030)
        order: list[str] = []
        loop.call_at(when, order.append, "timer")
        await sleep_until(loop, when)
        order.append("sleeper")
        assert loop.time() >= when
        return order

    assert asyncio.run(go()) == ["timer", "sleeper"]
