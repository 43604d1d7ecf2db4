"""Aggregation: bulk goodput over several paths against the sum of their rates, and
against the best single path measured in the same run.

As root, with a keyring: python3 -m benchmarks.bench_aggregation [--size MB] [--runs N]

Two labs (shared exit), scenario files written here:
- ``three``: hk 20 Mbit/s 15 ms, tyo 20 Mbit/s 30 ms, sgp 10 Mbit/s 35 ms one way (the
  issue's); the best single path is hk (the highest rate, then the shortest delay).
- ``pair``: near 20 Mbit/s 10 ms, far 20 Mbit/s 30 ms one way: round trips 3x apart, where
  a per-packet scheduler that ignores the delay does worse than the near path alone.
Rows, each a transfer (app/lab/transfer) started in the bulk class (`braid run --class
bulk`, so Braid spreads its flows, docs/multipath.md "Bulk spreading"):
- 6-flow upload and download: ``goodput`` is what the transfer reports (all its bytes
  at the far side over the time until the last flow finished: what a user copying six
  files waits for; each flow carries a sixth, so a path given too many flows holds the
  whole batch up), ``flows_sum`` the sum of the flows' own rates (each flow's bytes over
  its own time, counted where they arrive: the paths' aggregate while every flow runs,
  what six transfers that each go on would get); each over the sum of the rates (the
  rate limits count outer IP bytes: at most 92.4 % of a rate is TCP payload, bench_relay);
  ``bytes_share``: how the tunnels' bytes split between the paths;
- one TCP flow: it rides one path (per-flow spreading never splits a flow);
- MPTCP, one flow: one connection, a subflow per healthy tunnel (the far end speaks it);
- the baseline: the same transfers through a plain WireGuard tunnel through the best
  single path (the lab's baseline node), in the same run.
The engine steers only bulk and default here: with realtime steered, bulk keeps off
realtime's path (one row shows what that costs on ``three``).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.engine import EngineConfig
from app.lab import topology, transfer
from app.lab.model import baseline_iface
from app.lab.transfer import TransferResult
from benchmarks.enginelab import engine_on_lab, wait_for
from benchmarks.record import ROOT, Run

PAYLOAD_SHARE = 1368 / 1480  # TCP payload per outer IP byte (bench_relay)
SCENARIOS: dict[str, list[tuple[str, float, float]]] = {  # name, Mbit/s, one-way ms
    "three": [("hk", 20.0, 15.0), ("tyo", 20.0, 30.0), ("sgp", 10.0, 35.0)],
    "pair": [("near", 20.0, 10.0), ("far", 20.0, 30.0)],
}
NO_REALTIME = EngineConfig(classes=("bulk", "default"))


def scenario_file(name: str, where: Path, scale: float = 1.0) -> Path:
    body = [f'description = "bench_aggregation: {name}"']
    for path, rate, delay in SCENARIOS[name]:
        body += ["[[path]]", f'name = "{path}"', f"delay_ms = {delay:g}",
                 f"rate_mbit = {rate * scale:g}", "queue_ms = 100"]
    out = where / f"{name}.toml"
    out.write_text("\n".join(body) + "\n")
    return out


def best_path(name: str) -> str:
    return max(SCENARIOS[name], key=lambda p: (p[1], -p[2]))[0]


def held_slots(lab: topology.LabInfo) -> Counter[str]:
    """Slots per path in the bulk chain the kernel holds (spread.py's weights)."""
    out = subprocess.run(["ip", "netns", "exec", topology.netns(lab.name, "client"), "nft",
                          "list", "chain", "inet", "braid", "to_bulk"], capture_output=True,
                         text=True, check=False).stdout
    return Counter(lab.gateways[int(n) - 1].name
                   for n in re.findall(r"goto spread_(\d+)", out))


def counters(ns: str, ifaces: list[str]) -> dict[str, tuple[int, int]]:
    """Inner bytes (tx, rx) of each interface."""
    out = json.loads(subprocess.run(["ip", "netns", "exec", ns, "ip", "-j", "-s", "link"],
                                    capture_output=True, text=True, check=True).stdout)
    return {link["ifname"]: (link["stats64"]["tx"]["bytes"], link["stats64"]["rx"]["bytes"])
            for link in out if link["ifname"] in ifaces}


@dataclass
class Sampler:
    """The interfaces' byte counters every 0.25 s while a transfer runs, from a thread."""

    ns: str
    ifaces: list[str]
    samples: list[tuple[float, dict[str, tuple[int, int]]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.wait(0.25):
            self.samples.append((time.monotonic(), counters(self.ns, self.ifaces)))

    def shares(self, reverse: bool) -> dict[str, float]:
        """Each interface's share of the bytes over the whole transfer."""
        if len(self.samples) < 2:
            return {}
        k = 1 if reverse else 0
        (_, c0), (_, c1) = self.samples[0], self.samples[-1]
        moved = {n: c1[n][k] - c0[n][k] for n in c1 if n in c0}
        total = sum(moved.values()) or 1
        return {n: round(v / total, 3) for n, v in moved.items()}


def bulk_transfer(lab: str, size_mb: float, flows: int, reverse: bool) -> TransferResult:
    """A transfer from the lab's client, started in the bulk class by `braid run`."""
    argv = [sys.executable, "-m", "app.cli.main", "run", "--lab", lab, "--class", "bulk",
            "--", sys.executable, "-m", "app.lab.transfer", "--size", str(size_mb),
            "--flows", str(flows), "--timeout", "120"]
    if reverse:
        argv.append("--reverse")
    done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=180,
                          check=False)
    if done.returncode != 0:
        raise SystemExit(f"the bulk transfer failed: {done.stderr.strip()}")
    return TransferResult.from_json(json.loads(done.stdout))


def measured(lab: topology.LabInfo, size_mb: float, flows: int, reverse: bool, *,
             baseline: bool) -> dict[str, Any]:
    ns = topology.netns(lab.name, "base" if baseline else "client")
    ifaces = [baseline_iface(lab.name)] if baseline else [g.client_interface
                                                          for g in lab.gateways]
    sampler = Sampler(ns, ifaces)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    try:
        r = (transfer.transfer(lab.name, size_mb=size_mb, flows=flows, reverse=reverse,
                               baseline=True) if baseline
             else bulk_transfer(lab.name, size_mb, flows, reverse))
    finally:
        sampler.stop.set()
        thread.join()
    by_path = {g.client_interface: g.name for g in lab.gateways}
    # Counted where the bytes arrive (the transfer's own account), not at the sender's
    # tunnel: an upload's bytes enter the tunnels faster than the relays let them through.
    return {"goodput_mbit_s": r.mbit_s, "flows_sum_mbit_s": sum(r.flow_mbit_s),
            "completed": r.completed, "seconds": r.seconds,
            "flow_mbit_s": [round(f, 2) for f in r.flow_mbit_s],
            "bytes_share": {by_path.get(n, "baseline"): s
                            for n, s in sampler.shares(reverse).items()}}


def mptcp_flow(lab: topology.LabInfo, size_mb: float) -> dict[str, Any] | None:
    """One MPTCP connection (the client's kernel opens a subflow per healthy tunnel;
    the far end speaks MPTCP): app.lab.transfer.one_mptcp_flow."""
    r = transfer.one_mptcp_flow(lab.name, size_mb=size_mb)
    return {"goodput_mbit_s": r.mbit_s, "completed": r.completed, "seconds": r.seconds,
            "subflows": r.mptcp_subflows}


ROWS = [("up6", 6, False), ("down6", 6, True), ("one", 1, False)]


def run_scenario(name: str, scen: Path, args: argparse.Namespace,
                 config: EngineConfig = NO_REALTIME, rows: list[tuple[str, int, bool]] = ROWS,
                 baseline: bool = True) -> dict[str, Any]:
    total = sum(rate for _, rate, _ in SCENARIOS[name]) * args.scale
    best = best_path(name)
    out: dict[str, Any] = {"sum_rates_mbit_s": total, "best_path": best}
    with engine_on_lab(scen, baseline=best, config=config, exit="shared") as s:
        # Bulk spread over every path bulk may take (all of them without realtime).
        spread = len(SCENARIOS[name]) - (0 if "realtime" not in config.classes else 1)
        wait_for(lambda: len(held_slots(s.lab)) == spread, 30, "bulk to be spread")
        for _ in range(args.runs):
            for row, flows, reverse in rows:
                slots = dict(held_slots(s.lab))
                m = measured(s.lab, args.size, flows, reverse, baseline=False)
                m["slots"] = slots
                m["of_rates"] = m["goodput_mbit_s"] / total
                m["flows_sum_of_rates"] = m["flows_sum_mbit_s"] / total
                out.setdefault(row, []).append(m)
                print(f"  braid {row:>5}: {m['goodput_mbit_s']:5.1f} Mbit/s "
                      f"({m['of_rates']:.0%} of {total:g}), flows' sum "
                      f"{m['flows_sum_mbit_s']:5.1f} ({m['flows_sum_of_rates']:.0%}); "
                      f"bytes {m['bytes_share']}; slots {slots}",
                      flush=True)
                if baseline:
                    b = measured(s.lab, args.size, flows, reverse, baseline=True)
                    out.setdefault(f"baseline_{row}", []).append(b)
                    m["vs_best_path"] = m["goodput_mbit_s"] / b["goodput_mbit_s"]
                    print(f"  {best:>5} {row:>5}: {b['goodput_mbit_s']:5.1f} Mbit/s alone; "
                          f"braid/best {m['vs_best_path']:.2f}", flush=True)
        if baseline:
            one = out["mptcp_one"] = mptcp_flow(s.lab, args.size)
            if one is not None:
                print(f"  braid mptcp: {one['goodput_mbit_s']:5.1f} Mbit/s "
                      f"({one['goodput_mbit_s'] / total:.0%} of {total:g}), "
                      f"{one['subflows']} subflows", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=float, default=30.0, help="MB per transfer")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--only", choices=sorted(SCENARIOS))
    # The lab's links are userspace relays: on a small busy machine their CPU, not the
    # rate limits, caps 50 Mbit/s (bench_relay). --scale 0.25 keeps the paths the limit.
    ap.add_argument("--scale", type=float, default=1.0, help="rates times this")
    args = ap.parse_args()
    figures: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in SCENARIOS:
            if args.only and name != args.only:
                continue
            print(f"{name} (rates x {args.scale:g}): {SCENARIOS[name]}", flush=True)
            figures[name] = run_scenario(name, scenario_file(name, Path(tmp), args.scale), args)
        if not args.only or args.only == "three":
            print("three, realtime steered (its path kept free of bulk):", flush=True)
            figures["three_with_realtime"] = run_scenario(
                "three", scenario_file("three", Path(tmp), args.scale), args, EngineConfig(),
                rows=[("up6", 6, False)], baseline=False)
    # A scaled run is kept apart: it answers another question (paths, not the CPU).
    with Run("bench_aggregation" + ("" if args.scale == 1 else "_scaled"), vars(args)) as run:
        run.figures.update(figures)
        run.figures["payload_share"] = PAYLOAD_SHARE
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
