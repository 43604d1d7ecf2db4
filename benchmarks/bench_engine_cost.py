"""The engine's cost: CPU and bits per second of probing, three and eight paths, with
fast probing on (the shipped defaults) and off (the baseline) in the same run.

As root, with a keyring:
    bash scripts/with-keyring.sh python3 -m benchmarks.bench_engine_cost [--seconds S]

In one process: the process's CPU idle first, then for each of 3 and 8 paths (clean
delays; the 8-path lab is generated) and each engine, a fresh lab, the engine
connected, a call-like stream (50 packets/s) on the default class, and S seconds
measured:
- **braid**: the busy carried path every 10 ms, the other carried paths and the backup
  every 50 ms, standbys every 200 ms, the tunnels' counters every 20 ms;
- **baseline**: the probing before this issue, 50 ms on the carried path, no counters;
- and the shipped engine with other active intervals (``--also-active-ms``, 20 ms).
Prints the engine thread's CPU in % of one core (what the aims are about: at most 3 %
for three paths and 6 % for eight), the process's, probes per second and what they
cost on the wire, one way, WireGuard included (probe.py: 92 bytes per probe), and how
often the engine thread woke (its voluntary context switches: a count that the
machine's noise does not move, where the CPU figure varies by a point from run to run;
grid.py says why wake-ups are what the CPU follows). Then
where the time goes: the cost of each step of a probe, measured alone, and the floor
of the wake-up grid (``wake_floor``): an event loop woken every 10 ms (the active
interval) doing nothing, and doing one probe's tracker steps per wake-up, against the
same steps back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import threading
import time
import timeit
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from app.core.engine import EngineConfig
from app.core.liveness import LivenessConfig, ProbeTracker
from app.core.pathstats import PathStats
from app.core.probe import WIRE_BYTES, ProbeRates, echo_request
from app.lab import stream
from benchmarks.enginelab import engine_on_lab, wait_for
from benchmarks.record import Run

STREAM_PPS = 50
ENGINES = {
    "braid": EngineConfig(),
    "baseline": replace(EngineConfig(), rates=ProbeRates(active_s=0.050, backup_s=0.200),
                        liveness=LivenessConfig(late_step_s=0.0, passive=False)),
}


def scenario_file(n: int, where: Path) -> Path | str:
    if n == 3:
        return "clean"
    body = [f'description = "{n} quiet paths"']
    for i in range(n):
        body += ["[[path]]", f'name = "p{i + 1}"', f"delay_ms = {15 + 5 * i}"]
    path = where / f"paths{n}.toml"
    path.write_text("\n".join(body) + "\n")
    return path


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _threads(name_prefix: str) -> list[str]:
    """The ids of this process's threads whose name starts with ``name_prefix``."""
    out = []
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                if f.read().strip().startswith(name_prefix[:15]):
                    out.append(tid)
        except OSError:
            continue
    return out


def thread_cpu_s(name_prefix: str) -> float:
    """CPU seconds of this process's threads whose name starts with ``name_prefix``."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for tid in _threads(name_prefix):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            continue
    return total


def thread_wakeups(name_prefix: str) -> int:
    """Voluntary context switches of the threads named ``name_prefix``: each is one
    sleep, so one wake-up."""
    total = 0
    for tid in _threads(name_prefix):
        try:
            with open(f"/proc/self/task/{tid}/status") as f:
                total += next(int(line.split()[1]) for line in f
                              if line.startswith("voluntary_ctxt_switches:"))
        except (OSError, StopIteration):
            continue
    return total


def measure(scenario: Path | str, cfg: EngineConfig, seconds: float) -> dict[str, float]:
    with engine_on_lab(scenario, config=cfg) as s:
        wait_for(lambda: s.watch.last is not None and s.watch.last.state.value == "connected",
                 60, "connected")
        assert s.watch.last is not None
        # Traffic on one class, so that its path is probed at the active rate (a path
        # whose classes send nothing is probed at the backup rate: probing.py).
        with ThreadPoolExecutor(1) as pool:
            talk = pool.submit(stream.stream, s.lab.name, pps=STREAM_PPS,
                               duration=seconds + 4, size=200)
            time.sleep(2.0)
            sent0 = s.watch.last.counters.probes_sent
            c0, th0, t0 = cpu_s(), thread_cpu_s("braid-engine"), time.monotonic()
            w0 = thread_wakeups("braid-engine")
            time.sleep(seconds)
            dt = time.monotonic() - t0
            wakeups = (thread_wakeups("braid-engine") - w0) / dt
            talk.result()
        probes = (s.watch.last.counters.probes_sent - sent0) / dt
        return {
            "engine_cpu_pct": (thread_cpu_s("braid-engine") - th0) / dt * 100,
            "process_cpu_pct": (cpu_s() - c0) / dt * 100,
            "engine_wakeups_per_s": wakeups,
            "probes_per_s": probes,
            "wire_kbit_s": probes * WIRE_BYTES * 8 / 1000,
            "paths": len(s.watch.last.paths),
        }


def steps_us() -> dict[str, float]:
    """Where a probe's time goes, each step alone (microseconds)."""
    t = ProbeTracker(PathStats())
    seq = [0]
    n = 20000
    return {
        "tracker_sent_reply_check_us": timeit.timeit(lambda: _cycle(t, seq), number=n) / n * 1e6,
        "build_echo_us": timeit.timeit(lambda: echo_request(1, 2, b"abcd"), number=n) / n * 1e6,
        "metrics_us": timeit.timeit(t.stats.metrics, number=2000) / 2000 * 1e6,
    }


def _cycle(t: ProbeTracker, seq: list[int]) -> None:
    """One probe's steps in the tracker: sent, answered, checked, next deadline."""
    seq[0] = (seq[0] + 1) & 0xFFFF
    now = seq[0] * 0.01
    t.sent(seq[0], now)
    t.reply(seq[0], now + 0.03)
    t.check(now + 0.03)
    t.next_deadline(now + 0.03)


def wake_floor(period_s: float = 0.010, seconds: float = 5.0) -> dict[str, float]:
    """What the 10 ms wake-up grid costs before any probing: an event loop on its own
    thread woken every ``period_s`` doing nothing, and the same loop doing one probe's
    tracker steps per wake-up, against those steps run back to back (hot caches). After
    a 10 ms sleep the caches are cold, so the same Python work costs several times its
    back-to-back figure: the engine's cost is mostly per wake-up, not in one function."""
    out: dict[str, float] = {}

    def run(work: bool) -> float:
        t, seq = ProbeTracker(PathStats()), [0]
        spent = [0.0, 0]

        async def loop_main() -> None:
            loop = asyncio.get_running_loop()
            done: asyncio.Future[None] = loop.create_future()
            end, nxt = loop.time() + seconds, [loop.time()]

            def wake() -> None:
                if work:
                    c = time.thread_time()
                    _cycle(t, seq)
                    spent[0] += time.thread_time() - c
                    spent[1] += 1
                if loop.time() >= end:
                    done.set_result(None)
                    return
                nxt[0] += period_s
                loop.call_at(nxt[0], wake)

            wake()
            await done

        result = [0.0]

        def body() -> None:
            c = time.thread_time()
            asyncio.run(loop_main())
            result[0] = time.thread_time() - c

        th = threading.Thread(target=body, name="braid-floor")
        th.start()
        th.join()
        if work:
            out["tracker_cold_us"] = spent[0] / max(spent[1], 1) * 1e6
        return result[0] / seconds * 100

    out["bare_loop_pct"] = run(work=False)
    out["loop_with_tracker_pct"] = run(work=True)
    t, seq = ProbeTracker(PathStats()), [0]
    n = 20000
    out["tracker_hot_us"] = timeit.timeit(lambda: _cycle(t, seq), number=n) / n * 1e6
    out["period_ms"] = period_s * 1000
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--paths", default="3,8")
    ap.add_argument("--also-active-ms", default="20",
                    help="also measure the shipped engine with these active intervals")
    args = ap.parse_args()
    with Run("bench_engine_cost", vars(args)) as run, tempfile.TemporaryDirectory() as tmp:
        c0, t0 = cpu_s(), time.monotonic()
        time.sleep(min(10.0, args.seconds))
        run.figures["idle_cpu_pct"] = (cpu_s() - c0) / (time.monotonic() - t0) * 100
        print(f"engine cost over {args.seconds:g} s per engine; idle process "
              f"{run.figures['idle_cpu_pct']:.2f} % of a core")
        print(f"{'paths':>5} {'engine':14} {'engine CPU':>11} {'process':>9} {'probes/s':>9} "
              f"{'wire kbit/s':>12} {'wake-ups/s':>11}")
        engines = dict(ENGINES)
        for active_ms in [float(x) for x in args.also_active_ms.split(",") if x]:
            engines[f"braid@{active_ms:g}ms"] = replace(
                EngineConfig(), rates=ProbeRates(active_s=active_ms / 1000))
        for n in [int(x) for x in args.paths.split(",")]:
            scen = scenario_file(n, Path(tmp))
            out = {name: measure(scen, cfg, args.seconds) for name, cfg in engines.items()}
            for name, m in out.items():
                print(f"{n:>5} {name:14} {m['engine_cpu_pct']:>9.2f} % "
                      f"{m['process_cpu_pct']:>7.2f} % {m['probes_per_s']:>9.1f} "
                      f"{m['wire_kbit_s']:>12.1f} {m['engine_wakeups_per_s']:>11.1f}")
            b, o = out["braid"], out["baseline"]
            aim = 3.0 if n <= 3 else 6.0
            print(f"      braid: {b['probes_per_s'] / o['probes_per_s']:.1f}x the probes for "
                  f"{b['engine_cpu_pct'] / o['engine_cpu_pct']:.2f}x the CPU; "
                  f"{b['engine_cpu_pct']:.2f} % vs the {aim:g} % aim")
            run.figures[f"paths_{n}"] = out
        run.figures["steps"] = steps_us()
        print("where a probe's time goes (us): " + ", ".join(
            f"{k[:-3]} {v:.1f}" for k, v in run.figures["steps"].items()))
        floor = run.figures["wake_floor"] = wake_floor()
        print(f"the wake-up grid: an event loop woken every {floor['period_ms']:g} ms costs "
              f"{floor['bare_loop_pct']:.2f} % of a core doing nothing, "
              f"{floor['loop_with_tracker_pct']:.2f} % doing one probe's tracker steps per "
              f"wake-up; those steps take {floor['tracker_cold_us']:.1f} us there, "
              f"{floor['tracker_hot_us']:.1f} us back to back (cold caches: "
              f"{floor['tracker_cold_us'] / floor['tracker_hot_us']:.1f}x)")


if __name__ == "__main__":
    main()
