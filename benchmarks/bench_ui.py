"""The tray app's cost, and whether the graph window delays the engine.

As root (it builds a lab): python3 -m benchmarks.bench_ui [--seconds S] [--rounds N]

Runs the real app (offscreen, or on $DISPLAY with --display) connected to a three-path
lab, and alternates two phases in one run: *tray* (connected, graph window hidden)
and *graph* (the path graph window open, its history pre-filled with ten minutes of
three paths so it draws the worst case). Per phase it reports, as medians over the
rounds:
- CPU of the whole app, of the engine thread and of the UI thread, in % of one core;
- the app's resident memory;
- the UI: snapshots shown and graph redraws per second, and the time one redraw takes;
- the engine's timing: probes sent per second (all paths), the lateness of its 10 Hz
  snapshot loop (interval minus 100 ms: median, p99, max) and the RTT it measured
  (median over the active path's probes). If drawing delayed the engine, lateness and
  RTT would grow and the probe rate fall in the graph phase; the ratios say by how much.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import string
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import app.lab.register  # noqa: F401  (lab targets, as the CLI has them)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def thread_cpu_s(tid: int) -> float:
    fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def process_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Tap:
    """Sits between the engine and the UI, on the engine thread: timestamps snapshots."""

    sink: Callable[[Any], None] | None = None
    arrivals: list[float] = field(default_factory=list)
    rtts: list[float] = field(default_factory=list)
    last_rtt: dict[str, float] = field(default_factory=dict)

    def __call__(self, snap: Any) -> None:
        self.arrivals.append(time.perf_counter())
        carriers = snap.classes.get("default", ())
        for p in snap.paths:
            # Count each new probe result of the active path once.
            if carriers and p.name == carriers[0] and p.rtt_ms is not None \
                    and self.last_rtt.get(p.name) != p.rtt_ms:
                self.rtts.append(p.rtt_ms)
            if p.rtt_ms is not None:
                self.last_rtt[p.name] = p.rtt_ms
        assert self.sink is not None
        self.sink(snap)


def prefill(history: Any, template: Any, minutes: float, rate_hz: float) -> int:
    """Ten minutes of three paths, ending now: what a long-running app holds."""
    import math

    n = int(minutes * 60 * rate_hz)
    now = time.time()
    for i in range(n):
        t = now - (n - i) / rate_hz
        wobble = 1 + 0.1 * math.sin(i / 37.0)
        paths = tuple(replace(p, rtt_ms=(p.rtt_ms or 50) * wobble,
                              rtt_smoothed_ms=(p.rtt_ms or 50) * wobble) for p in template.paths)
        history.add(replace(template, t=t, paths=paths, events=()))
    return n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=15.0, help="per phase (default 15)")
    parser.add_argument("--rounds", type=int, default=2, help="tray/graph pairs (default 2)")
    parser.add_argument("--scenario", default="clean")
    parser.add_argument("--display", action="store_true",
                        help="draw on $DISPLAY instead of offscreen")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if not args.display:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from app.core.model import ConnState
    from app.core.service import EngineService
    from app.lab import topology
    from app.ui.app import BraidApp

    qt = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(qt, QApplication)

    def run_loop(seconds: float) -> None:
        loop = QEventLoop()
        QTimer.singleShot(int(seconds * 1000), loop.quit)
        loop.exec()

    def wait_for(cond: Callable[[], bool], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise SystemExit("bench_ui: timed out waiting for the connection")
            run_loop(0.05)

    lab = "b" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(4))
    tap = Tap()
    services: list[EngineService] = []

    def make_engine(sink: Callable[[Any], None]) -> EngineService:
        tap.sink = sink
        services.append(EngineService(tap))
        return services[0]

    topology.build(lab, args.scenario)
    braid = BraidApp(make_engine, use_tray=True)
    try:
        braid.connect_named(f"lab-{lab}")
        wait_for(lambda: braid.controller.latest.state is ConnState.CONNECTED, 30)
        run_loop(3.0)  # past the first placement and the fast initial probing
        filled = prefill(braid.history, braid.controller.latest, 10.0, 10.0)

        redraw_ms: list[float] = []
        original = braid.graph.redraw

        def timed_redraw() -> None:
            t0 = time.perf_counter()
            original()
            redraw_ms.append((time.perf_counter() - t0) * 1000)

        braid.graph.redraw = timed_redraw  # type: ignore[method-assign]
        main_tid = threading.main_thread().native_id
        assert main_tid is not None

        def engine_tid() -> int:
            (thread,) = [t for t in threading.enumerate() if t.name.startswith("braid-engine")]
            assert thread.native_id is not None
            return thread.native_id

        def probes_sent() -> int:
            engine = services[0].last_engine
            assert engine is not None
            return sum(p.prober.sent for p in engine.paths if p.prober is not None)

        results: dict[str, list[dict[str, float]]] = {"tray": [], "graph": []}
        for _ in range(args.rounds):
            for phase in ("tray", "graph"):
                if phase == "graph":
                    braid.show_paths()
                else:
                    braid.graph.hide()
                run_loop(1.0)  # let the show/hide settle outside the measurement
                etid = engine_tid()
                c0 = (process_cpu_s(), thread_cpu_s(etid), thread_cpu_s(main_tid))
                shown0, redraws0, probes0 = (braid.controller.snapshots_shown,
                                             len(redraw_ms), probes_sent())
                a0, r0 = len(tap.arrivals), len(tap.rtts)
                w0 = time.perf_counter()
                run_loop(args.seconds)
                wall = time.perf_counter() - w0
                c1 = (process_cpu_s(), thread_cpu_s(etid), thread_cpu_s(main_tid))
                gaps = [(b - a) * 1000 - 100 for a, b in
                        zip(tap.arrivals[a0:], tap.arrivals[a0 + 1:], strict=False)]
                draws = redraw_ms[redraws0:]
                results[phase].append({
                    "cpu_app_pct": 100 * (c1[0] - c0[0]) / wall,
                    "cpu_engine_pct": 100 * (c1[1] - c0[1]) / wall,
                    "cpu_ui_pct": 100 * (c1[2] - c0[2]) / wall,
                    "rss_mb": rss_mb(),
                    "shown_per_s": (braid.controller.snapshots_shown - shown0) / wall,
                    "redraws_per_s": len(draws) / wall,
                    "redraw_ms_median": statistics.median(draws) if draws else 0.0,
                    "redraw_ms_p95": pct(draws, 0.95) if draws else 0.0,
                    "probes_per_s": (probes_sent() - probes0) / wall,
                    "loop_late_ms_median": statistics.median(gaps),
                    "loop_late_ms_p99": pct(gaps, 0.99),
                    "loop_late_ms_max": max(gaps),
                    "rtt_ms_median": statistics.median(tap.rtts[r0:]),
                })
    finally:
        braid.quit()
        topology.destroy(lab)

    summary = {phase: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
               for phase, runs in results.items()}
    if args.json:
        print(json.dumps({"prefilled_snapshots": filled, "phases": summary,
                          "runs": results}, indent=2))
        return 0
    print(f"bench_ui: lab {args.scenario}, 3 paths, {args.rounds} rounds x "
          f"{args.seconds:g} s per phase; graph history pre-filled with {filled} snapshots "
          f"(10 min at 10 Hz); {'offscreen' if not args.display else 'display'}")
    print(f"{'':24s}{'tray':>12s}{'graph open':>12s}{'ratio':>9s}")
    for key in summary["tray"]:
        a, b = summary["tray"][key], summary["graph"][key]
        ratio = f"{b / a:8.2f}x" if a else "      –  "
        print(f"{key:24s}{a:12.2f}{b:12.2f} {ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
