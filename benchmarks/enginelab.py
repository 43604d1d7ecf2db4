"""Shared by the engine's benchmarks: a fresh lab, the engine connected to it.

Run any of them as root, with a keyring (the lab's profile keeps its keys there):
    bash scripts/with-keyring.sh python3 -m benchmarks.bench_switchover
"""

from __future__ import annotations

import dataclasses
import secrets
import statistics
import string
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import app.lab.register  # noqa: F401  (lab targets, as the CLI has them)
from app.core.engine import EngineConfig
from app.core.model import EngineSnapshot
from app.core.profiles.store import ProfileStore
from app.core.service import EngineService
from app.core.targets import ConnectTarget
from app.lab import topology
from app.lab.profile import profile_name
from app.lab.topology import LabInfo
from tests.engine.conftest import Recorder
from tests.util import wait_until

T = TypeVar("T")


def lab_name() -> str:
    return "b" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(4))


def wait_for(cond: Callable[[], T], timeout: float, what: str) -> T:
    """``cond``'s first true value, read every 20 ms."""
    return wait_until(cond, timeout=timeout, interval=0.02, message=f"timed out waiting for {what}")


# The engine's latest snapshot, kept from its thread: the tests' recorder, not a copy.
Watch = Recorder


@dataclass
class Session:
    lab: LabInfo
    service: EngineService
    watch: Watch


@contextmanager
def engine_on_lab(scenario: str | Path, *, baseline: str | None = None,
                  config: EngineConfig | None = None,
                  watch: Callable[[EngineSnapshot], None] | None = None,
                  settings: Mapping[str, Any] | None = None,
                  **build: Any) -> Iterator[Session]:
    """Build a lab (``build``: more of topology.build's options), connect the engine
    (default settings unless ``config``), clean up. ``watch`` also gets every snapshot.
    ``settings``: profile settings to change before connecting (e.g. copies="always"),
    as a user would in the Settings dialog."""
    name = lab_name()
    lab = topology.build(name, scenario, baseline=baseline, **build)
    if settings:
        try:
            store = ProfileStore()
            profile = store.load(profile_name(name))
            store.save(dataclasses.replace(
                profile, settings=dataclasses.replace(profile.settings, **settings)), {})
        except BaseException:
            topology.destroy(name)
            raise
    rec = Watch()

    def both(snap: EngineSnapshot) -> None:
        rec(snap)
        if watch is not None:
            watch(snap)

    service = EngineService(both, config=config)
    try:
        service.connect(ConnectTarget.for_lab(name))
        wait_for(lambda: rec.carrier() is not None, 30, "the engine to choose a path")
        yield Session(lab, service, rec)
    finally:
        service.shutdown()
        topology.destroy(name)


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt(value: float | None, unit: str = "ms", digits: int = 1) -> str:
    return "-" if value is None or value != value else f"{value:.{digits}f} {unit}"
