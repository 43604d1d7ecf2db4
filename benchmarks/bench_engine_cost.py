"""The engine's cost: CPU and memory with three paths probing at the default rates.

As root, with a keyring:
    bash scripts/with-keyring.sh python3 -m benchmarks.bench_engine_cost [--seconds S]

In one process: measures the process's CPU and resident memory idle (the baseline, same
run), then connects the engine to a fresh clean lab (three paths: the active one
probed every 50 ms, the standbys every 200 ms, snapshots at 10 Hz, helper status once
a second) and measures again over S seconds. Prints CPU in % of one core, RSS, the
probes sent per second, and the engine thread's own CPU time.
"""

from __future__ import annotations

import argparse
import resource
import threading
import time

from benchmarks.enginelab import engine_on_lab, wait_for


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def thread_cpu_s(name_prefix: str) -> float:
    """CPU seconds of this process's threads whose name starts with ``name_prefix``."""
    import os

    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                comm = f.read().strip()
            if not comm.startswith(name_prefix[:15]):
                continue
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except OSError:
            continue
    return total


def measure(seconds: float) -> tuple[float, float]:
    c0, t0 = cpu_s(), time.monotonic()
    time.sleep(seconds)
    return (cpu_s() - c0) / (time.monotonic() - t0) * 100, rss_mb()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    idle_cpu, idle_rss = measure(min(10.0, args.seconds))
    with engine_on_lab("clean") as s:
        wait_for(lambda: s.watch.last is not None and s.watch.last.state.value == "connected",
                 30, "connected")
        assert s.watch.last is not None
        sent0 = s.watch.last.counters.probes_sent
        th0 = thread_cpu_s("braid-engine")
        t0 = time.monotonic()
        cpu, rss = measure(args.seconds)
        dt = time.monotonic() - t0
        probes = (s.watch.last.counters.probes_sent - sent0) / dt
        engine_cpu = (thread_cpu_s("braid-engine") - th0) / dt * 100
        threads = threading.active_count()
    print(f"engine cost over {args.seconds:g} s, 3 paths at default rates "
          f"(active 50 ms, standby 200 ms)")
    print(f"  process CPU: {cpu:.2f} % of a core (idle baseline {idle_cpu:.2f} %, "
          f"engine adds {cpu - idle_cpu:.2f} points)")
    print(f"  engine thread CPU: {engine_cpu:.2f} % of a core")
    print(f"  RSS: {rss:.1f} MB (idle baseline {idle_rss:.1f} MB, +{rss - idle_rss:.1f} MB)")
    print(f"  probes sent: {probes:.1f} per second; threads: {threads}")


if __name__ == "__main__":
    main()
