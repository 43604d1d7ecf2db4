"""Fixtures for the lab's tests: labs with unique names, removed whatever happens."""

from __future__ import annotations

import secrets
import string
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.lab import proc, topology
from app.lab.scenario import Scenario
from app.lab.topology import LabInfo
from app.lab.wgpeer import UAPI_DIR


def unique_lab() -> str:
    return "t" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(4))


def leftovers(lab: str) -> list[str]:
    """Anything of ``lab`` still on the machine."""
    found = [ns for ns in proc.namespaces() if ns.startswith(f"braid-{lab}-")]
    found += [p.name for p in UAPI_DIR.glob(f"*-{lab}*.sock")] if UAPI_DIR.exists() else []
    if topology.runtime_dir(lab).exists():
        found.append(str(topology.runtime_dir(lab)))
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    found += [line for line in ps.splitlines() if f"-{lab}-" in line or f"/lab/{lab}/" in line]
    return found


LabFactory = Callable[..., LabInfo]


@pytest.fixture
def lab_factory() -> Iterator[LabFactory]:
    """build(scenario, **kwargs) with a fresh name; no helper or profile unless asked."""
    names: list[str] = []

    def make(scenario: str | Path | Scenario = "clean", **kwargs: object) -> LabInfo:
        name = unique_lab()
        names.append(name)
        opts: dict[str, object] = {"start_helper": False, "write_profile": False, **kwargs}
        return topology.build(name, scenario, **opts)  # type: ignore[arg-type]

    yield make
    for name in names:
        topology.destroy(name)


@pytest.fixture
def lab(lab_factory: LabFactory) -> LabInfo:
    """A `clean` lab with a baseline tunnel through hk."""
    return lab_factory("clean", baseline="hk")
