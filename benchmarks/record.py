"""Where every benchmark's figures go: one JSON file per benchmark under
benchmarks/results/, with the commit, the date and the machine they were measured on.

The README's and the docs' tables are generated from these files by
``python3 scripts/figures.py`` (which fills the ``<!-- figures: NAME -->`` blocks), so a
figure is never typed by hand and always says where it came from.

    with Run("bench_switchover", vars(args)) as run:
        ...
        run.figures["clean"] = {...}
    # written when the block ends without an error

A run whose machine was busy (load average over half the cores at its start or end) is
marked ``loaded``: the tables say so next to its figures.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(os.environ.get("BRAID_RESULTS_DIR", ROOT / "benchmarks" / "results"))


def commit() -> dict[str, Any]:
    def git(*argv: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(ROOT), *argv], capture_output=True,
                                  text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {"sha": git("rev-parse", "HEAD") or None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> dict[str, Any]:
    return {"host": socket.gethostname(), "cpus": os.cpu_count(), "cpu": cpu_model(),
            "kernel": platform.release(), "python": platform.python_version()}


def clean(value: Any) -> Any:
    """NaN and infinities (a figure that could not be measured) as null: JSON has none."""
    if isinstance(value, float):
        return None if value != value or value in (float("inf"), float("-inf")) else value
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def loaded(load: float, cpus: int | None) -> bool:
    return load > 0.5 * (cpus or 1)


class Run:
    """Collect one benchmark's figures; write them as JSON when the block succeeds."""

    def __init__(self, name: str, args: dict[str, Any]) -> None:
        self.name = name
        self.args = args
        self.figures: dict[str, Any] = {}
        self.path = RESULTS_DIR / f"{name}.json"

    def __enter__(self) -> Run:
        self._t0 = time.time()
        self._load0 = os.getloadavg()[0]
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if kind is not None:
            return
        load1 = os.getloadavg()[0]
        m = machine()
        doc = {
            "benchmark": self.name,
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._t0)),
            "seconds": round(time.time() - self._t0, 1),
            "commit": commit(),
            "machine": m,
            "load": {"start": round(self._load0, 2), "end": round(load1, 2),
                     "loaded": loaded(max(self._load0, load1), m["cpus"])},
            "args": clean(self.args),
            "figures": clean(self.figures),
        }
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        tmp.replace(self.path)
        print(f"figures written to {self.path}")
