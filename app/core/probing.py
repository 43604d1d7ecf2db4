"""The probers of all paths: started and stopped together, each at the rate its path's
role asks for (probe.py has the rates and why).

- a path that is suspect, not answering yet, or any path while the classes warm up:
  the suspect rate (20 ms), so its verdict comes quickly;
- a healthy path that carries a class: the active rate (50 ms);
- a healthy standby, or a down path waiting to come back: the standby rate (200 ms).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

from app.core.liveness import Health, HealthChange
from app.core.paths import PathRuntime
from app.core.probe import Prober, ProbeRates

OnChange = Callable[[PathRuntime, HealthChange | None], None]
OnError = Callable[[PathRuntime, str | None], None]


class ProbeSet:
    def __init__(self, paths: list[PathRuntime], rates: ProbeRates, on_change: OnChange,
                 on_error: OnError) -> None:
        self.paths = paths
        self.rates = rates
        self._on_change = on_change
        self._on_error = on_error
        self._by_name = {p.name: p for p in paths}
        self._probers: dict[str, Prober] = {}

    def start(self) -> None:
        """Open every path's socket and start probing (call on the engine's loop)."""
        for i, p in enumerate(self.paths):
            prober = Prober(p.name, p.spec.source, p.target, p.tracker, self._changed,
                            ident=(os.getpid() * 16 + i) & 0xFFFF,
                            interval_s=self.rates.suspect_s, on_error=self._errored)
            self._probers[p.name] = prober
            prober.start()

    def stop(self) -> None:
        for prober in self._probers.values():
            prober.stop()

    def _changed(self, prober: Prober, change: HealthChange | None, rtt: float | None) -> None:
        self._on_change(self._by_name[prober.name], change)

    def _errored(self, prober: Prober, error: str | None) -> None:
        self._on_error(self._by_name[prober.name], error)

    def set_rates(self, carried: Iterable[str], warming: bool) -> None:
        carrying = set(carried)
        r = self.rates
        for p in self.paths:
            prober = self._probers.get(p.name)
            if prober is None:
                continue
            h = p.tracker.health
            if h in (Health.SUSPECT, Health.UNKNOWN) or warming:
                prober.set_interval(r.suspect_s)
            elif h is Health.UP and p.name in carrying:
                prober.set_interval(r.active_s)
            else:
                prober.set_interval(r.standby_s)

    @property
    def sent(self) -> int:
        return sum(p.sent for p in self._probers.values())
