"""The lab relay's throughput and cost: does a bulk TCP flow reach the configured rate?

As root: python3 -m benchmarks.bench_relay [--runs N] [--size MB]

Builds its own lab (fresh name, no helper) with a baseline WireGuard tunnel through hk,
and for each rate limit (10, 25, 50 Mbit/s, then unlimited as the relay's own ceiling)
runs N TCP uploads through WireGuard through the relay, printing per rate the median
goodput, its ratio to the most TCP can carry at that rate (the limit counts the outer IP
bytes: 1368 bytes of TCP payload ride in 1480 bytes of WireGuard/UDP/IP, 92.4 %), and the
relay's CPU in % of one core while the transfers ran (from /proc). The baseline, in the
same run and for each rate: the kernel's own shaper doing the same job (the relay
unlimited, a tbf qdisc at that rate with an 80 ms queue on the baseline namespace's
uplink; tbf also counts the 14-byte Ethernet header, 1 % less goodput), so "relay vs
kernel" says what the userspace relay costs a flow. Also prints the self-test's figures.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import string
import subprocess
import time
from pathlib import Path

from app.lab import proc, topology
from app.lab.control import impair
from app.lab.selftest import run_selftest
from app.lab.transfer import transfer
from benchmarks.record import Run

PAYLOAD_SHARE = 1368 / 1480  # TCP payload per outer IP byte, MTU 1420 tunnel
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=float, default=20.0, help="MB per transfer")
    args = parser.parse_args()
    lab = "b" + "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(4))
    topology.build(lab, "clean", start_helper=False, write_profile=False, baseline="hk")
    try:
        relay_pid = proc.ns_pids(topology.netns(lab, "wan"))[0]
        print(f"{'rate':>10} {'goodput':>10} {'of max':>8} {'vs kernel':>9} {'relay CPU':>10}"
              "  runs")
        figures: dict[str, object] = {}
        for rate in (10.0, 25.0, 50.0, None):
            impair(lab, "hk", {"rate_mbit": rate, "queue_ms": 80.0})
            speeds, cpus = [], []
            for _ in range(args.runs):
                c0, t0 = cpu_seconds(relay_pid), time.monotonic()
                r = transfer(lab, size_mb=args.size, baseline=True)
                cpus.append(100 * (cpu_seconds(relay_pid) - c0) / (time.monotonic() - t0))
                speeds.append(r.mbit_s)
            good = statistics.median(speeds)
            kernel = kernel_baseline(lab, rate, args) if rate else None
            label = f"{rate:g} Mb/s" if rate else "unlimited"
            share = f"{good / (rate * PAYLOAD_SHARE):7.1%}" if rate else "      -"
            vs = f"{good / kernel:7.1%}" if kernel else "      -"
            print(f"{label:>10} {good:7.1f} Mb {share:>8} {vs:>9} {statistics.median(cpus):8.0f} %"
                  f"  {', '.join(f'{s:.1f}' for s in speeds)}")
            figures[label] = {"goodput_mbit_s": good, "kernel_mbit_s": kernel,
                              "of_max": good / (rate * PAYLOAD_SHARE) if rate else None,
                              "relay_cpu_pct": statistics.median(cpus)}
    finally:
        topology.destroy(lab)
    print()
    print(run_selftest().text())
    with Run("bench_relay", vars(args)) as run:
        run.figures.update(figures)
    return 0


def kernel_baseline(lab: str, rate: float, args: argparse.Namespace) -> float:
    """The same uploads shaped by the kernel's tbf instead of the relay."""
    base = topology.netns(lab, "base")
    impair(lab, "hk", {"rate_mbit": None})
    subprocess.run(["ip", "netns", "exec", base, "tc", "qdisc", "replace", "dev", "wan0",
                    "root", "tbf", "rate", f"{rate}mbit", "burst", "32kbit", "latency",
                    "80ms"], check=True, capture_output=True)
    try:
        speeds = [transfer(lab, size_mb=args.size, baseline=True).mbit_s
                  for _ in range(args.runs)]
    finally:
        subprocess.run(["ip", "netns", "exec", base, "tc", "qdisc", "del", "dev", "wan0",
                        "root"], capture_output=True)
        impair(lab, "hk", {"rate_mbit": rate, "queue_ms": 80.0})
    return statistics.median(speeds)


if __name__ == "__main__":
    raise SystemExit(main())
