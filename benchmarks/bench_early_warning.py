"""Early warning on cn-us, replayed: every probe outcome of one run recorded, then the
change detector (detect.py) fed that trace offline, so that its lead over the plain
score (the baseline, the same run's) and its warnings for nothing are judged on the
inputs the engine had, and a detector can be compared with another on identical inputs
(a live run's episodes, probe losses and jitter differ from run to run).

As root, with a keyring:
    bash scripts/with-keyring.sh python3 -m benchmarks.bench_early_warning [--minutes M]
    python3 -m benchmarks.bench_early_warning --trace FILE   # replay a recorded trace

The run: a fresh cn-us lab, the shipped engine, its scenario's episodes (bench_flaps).
Every path's tracker feeds a recorder beside its detector (``rtt``, ``fate``,
``taken_back``, with the tracker's own times), and the engine's snapshots give each
path's plain score at 10 Hz. The trace is written as JSON (``--save``) so a detector can
be tuned against it without a lab.

Per episode: the delay from its start to the first warning and to the plain score's
first reaction (bench_flaps.judge_warnings, which bench_flaps uses on the engine's own
warnings: a margin under its median of the 10 s before, or 0), and
the lead (score minus warning): the plain score is the baseline, computed in the same
run. Warnings in no episode of their path are for nothing, per hour.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

from app.core import engine as engine_mod
from app.core.decide import DecideConfig
from app.core.detect import ChangeDetector, DetectConfig
from app.core.engine import EngineConfig
from app.core.model import EngineSnapshot
from app.core.paths import PathRuntime, make_paths
from benchmarks.bench_flaps import episodes, judge_warnings
from benchmarks.enginelab import engine_on_lab, fmt
from benchmarks.record import Run

Call = tuple[str, float, float]  # (kind, t, value): rtt ms, fate lost 0/1, taken_back


@dataclass
class Trace:
    t0: float = 0.0  # the lab's start, wall clock (the snapshots' clock)
    minutes: float = 0.0
    clock: float = 0.0  # wall clock minus the trackers' (monotonic) clock
    calls: dict[str, list[Call]] = field(default_factory=dict)
    scores: list[tuple[float, dict[str, float]]] = field(default_factory=list)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"t0": self.t0, "minutes": self.minutes, "clock": self.clock,
                                    "calls": self.calls, "scores": self.scores}))

    @classmethod
    def load(cls, path: Path) -> Trace:
        d = json.loads(path.read_text())
        return cls(d["t0"], d["minutes"], d["clock"], {k: [tuple(c) for c in v]
                                           for k, v in d["calls"].items()},
                   [(t, s) for t, s in d["scores"]])


class _Tee:
    """The tracker's observer: the path's own detector, and the trace."""

    def __init__(self, inner: ChangeDetector, out: list[Call]) -> None:
        self.inner, self.out = inner, out

    def rtt(self, t: float, rtt_ms: float) -> None:
        self.out.append(("rtt", t, rtt_ms))
        self.inner.rtt(t, rtt_ms)

    def fate(self, t: float, lost: bool) -> None:
        self.out.append(("fate", t, float(lost)))
        self.inner.fate(t, lost)

    def taken_back(self, t: float) -> None:
        self.out.append(("taken_back", t, 0.0))
        self.inner.taken_back(t)


def record(minutes: float) -> Trace:
    trace = Trace(minutes=minutes)

    def recording(*args: Any, **kw: Any) -> list[PathRuntime]:
        paths = make_paths(*args, **kw)
        for p in paths:
            p.tracker.observer = _Tee(p.detector, trace.calls.setdefault(p.name, []))
        return paths

    def watch(snap: EngineSnapshot) -> None:
        trace.scores.append((snap.t, {p.name: p.score for p in snap.paths}))

    with mock.patch.object(engine_mod, "make_paths", recording), \
            engine_on_lab("cn-us", config=EngineConfig(), watch=watch) as s:
        trace.t0 = s.lab.started_at
        trace.clock = time.time() - time.monotonic()
        end = time.monotonic() + minutes * 60
        while time.monotonic() < end:
            time.sleep(1.0)
    return trace


def onsets(trace: Trace, make: Callable[[], ChangeDetector]) -> list[tuple[float, str]]:
    """(seconds from the lab's start, path) of each warning's first moment."""
    out = []
    for name, calls in trace.calls.items():
        det, was = make(), False
        for kind, t, v in calls:
            if kind == "rtt":
                det.rtt(t, v)
            elif kind == "fate":
                det.fate(t, bool(v))
            else:
                det.taken_back(t)
            if det.degrading and not was:
                out.append((t + trace.clock - trace.t0, name))
            was = det.degrading
    return sorted(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--trace", type=Path, help="replay this recorded trace instead of a run")
    ap.add_argument("--save", type=Path, help="write the run's trace here")
    args = ap.parse_args()
    with Run("bench_early_warning", {"minutes": args.minutes,
                                     "trace": str(args.trace) if args.trace else None}) as run:
        trace = Trace.load(args.trace) if args.trace else record(args.minutes)
        if args.save:
            trace.save(args.save)
        eps = episodes("cn-us", trace.minutes * 60)
        dwell = DecideConfig().dwell_s
        f = judge_warnings(eps, [(t - trace.t0, s) for t, s in trace.scores],
                           onsets(trace, lambda: ChangeDetector(DetectConfig())),
                           trace.minutes, dwell)
        run.figures["braid"] = f
        run.figures["dwell_s"] = dwell
        print(f"{f['warned_episodes']} of {len(f['episodes'])} episodes warned; median lead "
              f"over the plain score's first dip {fmt(f['median_lead_s'], 's')}, over its "
              f"drop held for the dwell ({dwell:g} s) {fmt(f['median_lead_held_s'], 's')}; "
              f"{f['warnings']} warnings, {f['for_nothing']} for nothing "
              f"({f['for_nothing_per_hour']:.1f}/h)")
        for r in f["episodes"]:
            print(f"  {r['path']:4} at {r['start_s']:5.0f} s {r['what']}: warning after "
                  f"{fmt(r['warning_after_s'], 's')}, score dips after "
                  f"{fmt(r['score_after_s'], 's')}, held after "
                  f"{fmt(r['score_held_after_s'], 's')}")
        for line in f["for_nothing_at"]:
            print("  for nothing: " + line)


if __name__ == "__main__":
    main()
