"""The tray app's cost with each of its windows open, and whether drawing delays the engine.

    python3 -m benchmarks.bench_ui [--source synthetic|lab] [--seconds S] [--rounds N]
    python3 -m benchmarks.bench_ui --frames N      # a fixed amount of work, for callgrind

Runs the real app (offscreen, or on $DISPLAY with --display) with its history pre-filled
with ten minutes of three paths at 10 Hz (what a long-running app holds: the worst case),
fed new snapshots at 10 Hz by one of two sources:
- *synthetic* (the default; no root, no lab): a stand-in engine thread publishes real
  EngineSnapshot objects from a fixed script (three paths with noisy RTT, jitter and
  loss; every two minutes the active path dies and traffic fails over and back; every
  five minutes all paths are lost for two seconds) through the app's real controller.
  Deterministic, so the figures hold on a shared machine.
- *lab* (as root, inside scripts/with-keyring.sh where no keyring runs): the real
  engine on a three-path lab; it also shows whether the UI delays the engine's probes.

In one run it alternates the phases of PHASES (the app idle in the tray; the path window
open) and reports per phase, as medians over the rounds, with each phase's ratio to the
tray:
- CPU of the whole app, of the engine thread and of the UI thread, in % of one core;
- the app's resident memory;
- snapshots shown per second; the plots' paints per second (full redraws, which move the
  time axis, and the rest, which only add the newest points); ms of the UI thread per
  snapshot shown (the window's update: median and p95), per paint of the plots (median
  and p95), and the UI thread's CPU per snapshot shown (all in);
- the engine's timing: the lateness of its 10 Hz loop (interval minus 100 ms: median,
  p99, max) and, on a lab, the probes it sent per second (all paths) and the RTT it
  measured (median over the active path's probes). If the UI held the engine up,
  lateness and RTT would grow and the probe rate fall with a window open.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import statistics
import string
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
RATE_HZ = 10.0


@dataclass(frozen=True)
class Phase:
    """A column: the app with these of its windows open (attributes of BraidApp), every
    other window in WINDOWS hidden."""

    name: str
    open: tuple[str, ...]


# "apps": the Apps window beside the path window (issue 11's figure), listing the apps
# of the namespace the app is connected in (the host's for the synthetic source: every
# process's sockets, as root) every 2 s.
PHASES: tuple[Phase, ...] = (
    Phase("tray", ()),
    Phase("paths", ("graph",)),
    Phase("apps", ("apps", "graph")),
)
WINDOWS: tuple[str, ...] = tuple(sorted({w for p in PHASES for w in p.open}))


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
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# -- the synthetic source --------------------------------------------------------------

PATHS = (("hk", 60.0), ("tk", 80.0), ("sg", 95.0))
PERIOD_S = 120.0  # the active path dies at 40 s into each period, returns at 52 s
ALL_LOST_EVERY_S = 300.0  # and every five minutes all paths are lost for 2 s


def noise(i: int, k: int) -> float:
    """A fixed pseudo-random number in [0, 1) for sample i of stream k."""
    x = math.sin(i * 12.9898 + k * 78.233) * 43758.5453
    return x - math.floor(x)


def synthetic_snapshot(t: float, origin: float) -> Any:
    """The scripted engine's snapshot at time t (a pure function of t - origin)."""
    from app.core.model import ConnState, EngineSnapshot, Event, EventKind, PathSnapshot

    i = round((t - origin) * RATE_HZ)
    since = (t - origin) % PERIOD_S
    hk_dead = 40.0 <= since < 52.0
    all_lost = (t - origin) % ALL_LOST_EVERY_S < 2.0 and t - origin >= ALL_LOST_EVERY_S
    active = "tk" if 40.0 <= since < 70.0 else "hk"
    paths = []
    for k, (name, base) in enumerate(PATHS):
        dead = all_lost or (name == "hk" and hk_dead)
        rtt = base * (1 + 0.08 * math.sin(i / 37.0 + k)) + 6 * noise(i, k)
        loss = 0.0 if noise(i // 50, k + 10) < 0.7 else 0.01 * (1 + k)
        carries = ("default",) if name == active and not all_lost else ()
        paths.append(PathSnapshot(
            name=name, interface=f"br-{name}", up=not dead, suspected=False,
            rtt_ms=None if dead else rtt, rtt_smoothed_ms=None if dead else rtt,
            rtt_p50_ms=None if dead else base, rtt_p95_ms=None if dead else base * 1.15,
            jitter_ms=None if dead else 1 + 4 * noise(i, k + 3),
            loss=1.0 if dead else loss, score=0.0 if dead else 0.9 - 0.02 * k - 5 * loss,
            cost=1.0, handshake_age_s=float(int(t - origin) % 120), rx_bps=0.0, tx_bps=0.0,
            classes=carries,
        ))
    events: list[Event] = []
    start = origin + math.floor((t - origin) / PERIOD_S) * PERIOD_S
    for at, kind, frm, to in ((start - PERIOD_S + 70.0, EventKind.BETTER_PATH, "tk", "hk"),
                              (start + 40.3, EventKind.FAILOVER, "hk", "tk"),
                              (start + 70.0, EventKind.BETTER_PATH, "tk", "hk")):
        if origin < at <= t:
            events.append(Event(t=at, kind=kind, cls="default", from_path=frm, to_path=to,
                                reason="scripted", detection_ms=300.0, switch_ms=2.0,
                                seq=round((at - origin) * RATE_HZ)))
    if all_lost:
        lost_at = origin + math.floor((t - origin) / ALL_LOST_EVERY_S) * ALL_LOST_EVERY_S + 0.3
        events.append(Event(t=lost_at, kind=EventKind.BLOCKED, cls="default",
                            from_path=active, to_path=None, reason="scripted",
                            seq=round((lost_at - origin) * RATE_HZ)))
    state = ConnState.DEGRADED if all_lost or hk_dead else ConnState.CONNECTED
    return EngineSnapshot(
        t=t, state=state, profile="synthetic", paths=tuple(paths),
        classes={"default": () if all_lost else (active,)},
        events=tuple(sorted(events, key=lambda e: e.seq)), pid=os.getpid(),
        blocked=all_lost,
    )


@dataclass(frozen=True)
class SyntheticTarget:
    profile: str = "synthetic"
    lab: str | None = None


class SyntheticEngine:
    """Stands in for EngineService: on connect, a thread named like the engine's publishes
    the scripted snapshots at 10 Hz to the sink, as the engine does from its own thread."""

    def __init__(self, sink: Callable[[Any], None], origin: float) -> None:
        self._sink = sink
        self.origin = origin
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def targets(self) -> list[SyntheticTarget]:
        return [SyntheticTarget()]

    def connect(self, target: SyntheticTarget) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="braid-engine-synthetic",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            self._sink(synthetic_snapshot(time.time(), self.origin))
            due += 1 / RATE_HZ
            self._stop.wait(max(0.0, due - time.monotonic()))

    def disconnect(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def shutdown(self, timeout: float = 10.0) -> None:
        self.disconnect()

    def attach_running(self) -> bool:
        return False  # no engine runs elsewhere: the script is this one


# -- measuring -------------------------------------------------------------------------


@dataclass
class Tap:
    """Sits between the engine and the UI, on the engine thread: timestamps snapshots."""

    sink: Callable[[Any], None] | None = None
    arrivals: list[float] = field(default_factory=list)
    rtts: list[float] = field(default_factory=list)
    last_rtt: dict[str, float] = field(default_factory=dict)
    probes_sent: int = 0  # the engine's own count, from its latest snapshot

    def __call__(self, snap: Any) -> None:
        self.arrivals.append(time.perf_counter())
        self.probes_sent = snap.counters.probes_sent
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


@dataclass
class Stopwatch:
    """Durations of calls, in ms, appended as they end."""

    ms: list[float] = field(default_factory=list)

    def wrap(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.ms.append((time.perf_counter() - t0) * 1000)
        return timed


def time_plot_paints() -> Stopwatch:
    """Times every paint of a pyqtgraph view (the plots): the drawing Qt does after the
    window's update, which the update's own time does not include."""
    import pyqtgraph as pg

    watch = Stopwatch()
    pg.GraphicsView.paintEvent = watch.wrap(pg.GraphicsView.paintEvent)  # type: ignore[method-assign]
    return watch


def prefill(history: Any, snapshot_at: Callable[[float], Any], minutes: float) -> int:
    """Ten minutes of snapshots, ending now: what a long-running app holds."""
    n = int(minutes * 60 * RATE_HZ)
    now = time.time()
    for i in range(n):
        history.add(snapshot_at(now - (n - i) / RATE_HZ))
    return n


def lab_template_series(template: Any) -> Callable[[float], Any]:
    """The lab's current snapshot with a wobble on its RTTs, at any time (for prefill)."""
    def at(t: float) -> Any:
        wobble = 1 + 0.1 * math.sin(t * RATE_HZ / 37.0)
        paths = tuple(replace(p, rtt_ms=(p.rtt_ms or 50) * wobble,
                              rtt_smoothed_ms=(p.rtt_ms or 50) * wobble) for p in template.paths)
        return replace(template, t=t, paths=paths, events=())
    return at


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--source", choices=("synthetic", "lab"), default="synthetic",
                        help="where snapshots come from (default synthetic: no lab, no root)")
    parser.add_argument("--seconds", type=float, default=15.0, help="per phase (default 15)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of all phases (default 3)")
    parser.add_argument("--scenario", default="clean", help="lab scenario (--source lab)")
    parser.add_argument("--display", action="store_true",
                        help="draw on $DISPLAY instead of offscreen")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--frames", type=int, metavar="N",
                        help="instead: the path window alone, N scripted snapshots in "
                             "simulated time (for callgrind; see count_frames)")
    args = parser.parse_args(argv)
    if not args.display:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    if args.frames:
        return count_frames(args.frames)

    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from app.core.model import ConnState
    from app.ui.app import BraidApp

    qt = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(qt, QApplication)
    paints = time_plot_paints()

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

    tap = Tap()
    engines: list[Any] = []
    origin = time.time() - 600.0  # the script starts where the pre-filled history does

    def make_engine(sink: Callable[[Any], None]) -> Any:
        tap.sink = sink
        if args.source == "lab":
            from app.core.service import EngineService
            engines.append(EngineService(tap))
        else:
            engines.append(SyntheticEngine(tap, origin))
        return engines[0]

    with source_context(args.source, args.scenario) as target_name:
        braid = BraidApp(make_engine, use_tray=True)
        try:
            braid.connect_named(target_name)
            wait_for(lambda: braid.controller.latest.state is ConnState.CONNECTED, 30)
            run_loop(3.0)  # past the first placement and the fast initial probing
            if args.source == "lab":
                at = lab_template_series(braid.controller.latest)
            else:
                def at(t: float) -> Any:
                    return synthetic_snapshot(t, origin)
            filled = prefill(braid.history, at, 10.0)
            braid.show_apps()  # made once (as the menu's first "Apps…"); the phases hide it
            results = measure(args, braid, tap, paints, run_loop)
        finally:
            braid.quit()
    report(args, filled, results)
    return 0


def count_frames(n: int) -> int:
    """--frames N: the path window, its history pre-filled as above, fed N scripted
    snapshots 0.1 s apart in simulated time and painted after each, all inside
    QApplication.exec, with nothing else running: the same work whatever the machine's
    load, so that valgrind counts the instructions of exactly that work:

        valgrind --tool=callgrind --collect-atstart=no \\
            --toggle-collect='QCoreApplication::exec()' \\
            python3 -m benchmarks.bench_ui --frames 100

    (run the interpreter itself, not a wrapper script such as pyenv's shim)."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from app.ui.app import BraidApp

    qt = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(qt, QApplication)
    origin = 1_000_000.0  # fixed: the same script every run
    braid = BraidApp(lambda sink: SyntheticEngine(sink, origin), use_tray=True)
    before = int(10 * 60 * RATE_HZ)
    for i in range(before):
        braid.history.add(synthetic_snapshot(origin + i / RATE_HZ, origin))
    braid.graph.show()
    for _ in range(5):
        qt.processEvents()
    snaps = [synthetic_snapshot(origin + (before + k) / RATE_HZ, origin) for k in range(n)]
    done: dict[str, float] = {}

    def run() -> None:
        graph = braid.graph
        full, cpu = graph.full_redraws, time.thread_time()
        for snap in snaps:
            braid.controller.apply(snap)
            qt.processEvents()
        done.update(full=graph.full_redraws - full, cpu_s=time.thread_time() - cpu)
        qt.quit()

    QTimer.singleShot(0, run)
    qt.exec()
    braid.quit()
    per = 1000 * done["cpu_s"] / n
    print(f"bench_ui --frames: {n} snapshots ({n / RATE_HZ:g} s at 10 Hz, simulated), "
          f"{done['full']:.0f} full redraws; UI thread {per:.2f} ms per snapshot "
          f"({per * RATE_HZ / 10:.1f} % of a core at 10 Hz)")
    return 0


@contextmanager
def source_context(source: str, scenario: str) -> Iterator[str]:
    """The profile to connect to: a lab built for the run (destroyed after), or the
    synthetic engine's one target."""
    if source != "lab":
        yield SyntheticTarget().profile
        return
    import app.lab.register  # noqa: F401  (lab targets, as the CLI has them)
    from app.lab import topology

    lab = "b" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(4))
    topology.build(lab, scenario)
    try:
        yield f"lab-{lab}"
    finally:
        topology.destroy(lab)


def measure(args: argparse.Namespace, braid: Any, tap: Tap, paints: Stopwatch,
            run_loop: Callable[[float], None]) -> dict[str, list[dict[str, float]]]:
    updates = Stopwatch()
    braid.graph.show_snapshot = updates.wrap(braid.graph.show_snapshot)
    main_tid = threading.main_thread().native_id
    assert main_tid is not None

    def engine_tid() -> int:
        (thread,) = [t for t in threading.enumerate() if t.name.startswith("braid-engine")]
        assert thread.native_id is not None
        return thread.native_id

    def probes_sent() -> int:
        return tap.probes_sent

    def full_redraws() -> int:
        return int(getattr(braid.graph, "full_redraws", 0))

    results: dict[str, list[dict[str, float]]] = {p.name: [] for p in PHASES}
    for _ in range(args.rounds):
        for phase in PHASES:
            for name in WINDOWS:
                if name not in phase.open:
                    getattr(braid, name).hide()
            for name in phase.open:
                getattr(braid, name).show()
            run_loop(1.0)  # let the show/hide settle outside the measurement
            etid = engine_tid()
            c0 = (process_cpu_s(), thread_cpu_s(etid), thread_cpu_s(main_tid))
            shown0, probes0, full0 = braid.controller.snapshots_shown, probes_sent(), \
                full_redraws()
            a0, r0, u0, p0 = len(tap.arrivals), len(tap.rtts), len(updates.ms), len(paints.ms)
            w0 = time.perf_counter()
            run_loop(args.seconds)
            wall = time.perf_counter() - w0
            c1 = (process_cpu_s(), thread_cpu_s(etid), thread_cpu_s(main_tid))
            gaps = [(b - a) * 1000 - 100 for a, b in
                    zip(tap.arrivals[a0:], tap.arrivals[a0 + 1:], strict=False)]
            shown = braid.controller.snapshots_shown - shown0
            update_ms, paint_ms = updates.ms[u0:], paints.ms[p0:]
            row = {
                "cpu_app_pct": 100 * (c1[0] - c0[0]) / wall,
                "cpu_engine_pct": 100 * (c1[1] - c0[1]) / wall,
                "cpu_ui_pct": 100 * (c1[2] - c0[2]) / wall,
                "rss_mb": rss_mb(),
                "shown_per_s": shown / wall,
                "paints_per_s": len(paint_ms) / wall,
                "full_redraws_per_s": (full_redraws() - full0) / wall,
                "update_ms_median": statistics.median(update_ms) if update_ms else 0.0,
                "update_ms_p95": pct(update_ms, 0.95),
                "paint_ms_median": statistics.median(paint_ms) if paint_ms else 0.0,
                "paint_ms_p95": pct(paint_ms, 0.95),
                "ui_cpu_ms_per_snapshot": 1000 * (c1[2] - c0[2]) / max(shown, 1),
                "loop_late_ms_median": statistics.median(gaps),
                "loop_late_ms_p99": pct(gaps, 0.99),
                "loop_late_ms_max": max(gaps),
            }
            if args.source == "lab":
                row["probes_per_s"] = (probes_sent() - probes0) / wall
                row["rtt_ms_median"] = statistics.median(tap.rtts[r0:])
            results[phase.name].append(row)
    return results


def report(args: argparse.Namespace, filled: int,
           results: dict[str, list[dict[str, float]]]) -> None:
    summary = {phase: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
               for phase, runs in results.items()}
    if args.json:
        print(json.dumps({"source": args.source, "prefilled_snapshots": filled,
                          "phases": summary, "runs": results}, indent=2))
        return
    where = f"lab {args.scenario}" if args.source == "lab" else "synthetic engine"
    print(f"bench_ui: {where}, 3 paths, {args.rounds} rounds x {args.seconds:g} s per phase; "
          f"history pre-filled with {filled} snapshots (10 min at 10 Hz); "
          f"{'offscreen' if not args.display else 'display'}")
    first, *others = (p.name for p in PHASES)
    head = f"{'':26s}{first:>10s}" + "".join(f"{o:>10s}{o + '/' + first:>13s}" for o in others)
    print(head)
    for key in summary[first]:
        base = summary[first][key]
        line = f"{key:26s}{base:10.2f}"
        for o in others:
            value = summary[o][key]
            ratio = f"{value / base:12.2f}x" if base else f"{'–':>13s}"
            line += f"{value:10.2f}{ratio}"
        print(line)


if __name__ == "__main__":
    sys.exit(main())
