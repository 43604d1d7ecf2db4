"""Every fault of the fail-closed issue, on the cn-us lab while a call runs: packets
leaked (must be 0), how long the call's traffic stopped, and what the user was told.

As root, with a keyring:
    bash scripts/with-keyring.sh python3 -m benchmarks.bench_faults

One lab (cn-us, a shared exit, a 1 s helper grace), `braid up --lab` in the background
with the kill switch, the client's ISP link given IPv6 and a leak counter outside the
client namespace, and an app sending UDP and TCP over IPv4 and IPv6 all along
(tests/faults.py: what leaves the client's link outside WireGuard is a leak). Then, one
after the other, each while a 100 packets/s call-like stream runs:
  1. the helper killed (-9) and started again, as systemd would;
  2. the wireguard-go of the default class's path killed (-9);
  3. `nft flush ruleset` in the client (a firewall reload);
  4. the default class's path dies (a failover);
  5. the engine killed (-9): past the helper's grace period (1 s) the kill switch
     stays, and traffic stays blocked until the user disconnects: measured are the
     leaks while the app keeps sending, the time until the helper holds the block, and
     that a stream no longer gets through.
For 1-4: the leak counters' packets (IPv4, IPv6), the stream's longest gap at the client
and its loss, and the engine's events from the fault on, as `braid status` words them.
The baseline is the same stream with no fault, measured first.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from app.core.helper_client import SyncHelperClient
from app.core.service import BLOCKED_ERROR
from app.lab import control, stream, topology
from app.lab.topology import LabInfo
from benchmarks.enginelab import lab_name, wait_for
from benchmarks.record import Run
from tests.engine.leaks import stream_gets_through
from tests.faults import (
    blaster,
    braid_cli,
    engine_state,
    leaked,
    reset_leaks,
    restart_helper,
    uplink,
    wireguard_go_pid,
)

PPS, SIZE = 100, 200


def status(env: dict[str, str]) -> dict[str, Any]:
    return json.loads(braid_cli(env, "status", "--json").stdout)  # type: ignore[no-any-return]


def default_path(env: dict[str, str]) -> str:
    return str(status(env)["classes"]["default"][0])


def told(env: dict[str, str], since: float) -> list[str]:
    """The events since ``since`` (wall clock), as `braid status` has them."""
    try:
        events = status(env).get("events") or []
    except (ValueError, KeyError):
        return ["(no engine to ask)"]
    return [f"{e['kind']}{' ' + e['cls'] if e.get('cls') else ''}: {e['reason']}"
            for e in events if e.get("t", 0) >= since]


def one(lab: LabInfo, env: dict[str, str], seconds: float,
        fault: Callable[[], None] | None) -> dict[str, Any]:
    """A stream of ``seconds``; ``fault`` injected once the stream is seen on a path."""
    reset_leaks(lab)
    before = sum(int(p["up"]["counters"]["out_pkts"]) for p in control.status(lab.name)["paths"])
    running = stream.start(lab.name, pps=PPS, duration=seconds, size=SIZE)
    wait_for(lambda: sum(int(p["up"]["counters"]["out_pkts"])
                         for p in control.status(lab.name)["paths"]) > before + PPS // 2,
             10, "the stream to show on a path")
    t0 = time.time()
    if fault is not None:
        fault()
    result = running.result()
    leaks = leaked(lab)
    return {"leaked_v4": leaks["leak4"], "leaked_v6": leaks["leak6"],
            "max_gap_ms": result.max_gap_ms, "loss_pct": result.loss_pct,
            "told": told(env, t0) if fault is not None else []}


def engine_dies(lab: LabInfo, env: dict[str, str]) -> dict[str, Any]:
    """kill -9 the engine; the helper's grace passes; the block must hold."""
    reset_leaks(lab)
    t0 = time.monotonic()
    subprocess.run(["kill", "-9", str(status(env)["pid"])], check=True)
    with SyncHelperClient(lab.helper_socket) as helper:
        wait_for(lambda: (g := helper.status().guard) is not None and g.held == "client_left",
                 20, "the helper to hold the kill switch for a client that left")
    held_s = time.monotonic() - t0
    through = stream_gets_through(lab)  # the app's traffic meanwhile: the blaster's
    leaks = leaked(lab)
    return {"leaked_v4": leaks["leak4"], "leaked_v6": leaks["leak6"], "max_gap_ms": None,
            "loss_pct": 0.0 if through else 100.0, "blocked_after_s": held_s,
            "told": [f"(no engine) {BLOCKED_ERROR.what}; {BLOCKED_ERROR.fix}" if not through
                     else "TRAFFIC GOT THROUGH after the engine died"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="each fault's stream")
    args = parser.parse_args()
    name = lab_name()
    results: dict[str, Any] = {}
    with Run("bench_faults", vars(args)) as run, tempfile.TemporaryDirectory() as tmp:
        lab = topology.build(name, "cn-us", exit="shared", helper_grace_seconds=1)
        env = {**os.environ, "BRAID_RUNTIME_DIR": str(Path(tmp) / "run")}
        try:
            with uplink(lab), blaster(lab, Path(tmp)):
                up = braid_cli(env, "up", "--lab", name)
                if up.returncode != 0:
                    raise SystemExit(f"braid up failed: {up.stderr}")
                wait_for(lambda: engine_state(env) == "connected", 30, "braid up to connect")
                ns = topology.netns(name, "client")

                def wg_kill() -> None:
                    iface = lab.gateway(default_path(env)).client_interface
                    subprocess.run(["kill", "-9", str(wireguard_go_pid(lab, iface))], check=True)

                def nft_flush() -> None:
                    subprocess.run(["ip", "netns", "exec", ns, "nft", "flush", "ruleset"],
                                   check=True)

                def path_dies() -> None:
                    control.impair(name, default_path(env), {"down": True})

                faults: list[tuple[str, Callable[[], None] | None]] = [
                    ("no fault (baseline)", None),
                    ("helper kill -9 and restart", lambda: restart_helper(lab, 1)),
                    ("wireguard-go kill -9", wg_kill),
                    ("nft flush ruleset", nft_flush),
                    ("the default path dies", path_dies),
                ]
                for what, fault in faults:
                    results[what] = one(lab, env, args.seconds, fault)
                    if what == "the default path dies":
                        for gw in lab.gateways:
                            control.impair(name, gw.name, {}, reset=True)
                        wait_for(lambda: engine_state(env) == "connected", 30,
                                 "the paths to come back")
                results["engine kill -9"] = engine_dies(lab, env)
                braid_cli(env, "down", "--lab", name)
        finally:
            braid_cli(env, "down", "--lab", name)
            topology.destroy(name)
        run.figures.update(results)
    for what, r in results.items():
        gap = "-" if r["max_gap_ms"] is None else f"{r['max_gap_ms']:.0f} ms"
        print(f"{what:28} leaked {r['leaked_v4']} IPv4 + {r['leaked_v6']} IPv6 packets; the "
              f"call's longest gap {gap}, loss {r['loss_pct']:.1f} %")
        for line in r["told"][:6]:
            print(f"    told: {line}")
    return 0 if all(r["leaked_v4"] == r["leaked_v6"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
