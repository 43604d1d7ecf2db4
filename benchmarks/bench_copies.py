"""Realtime copies through a path's death on cn-us as it is (its loss and episodes kept),
shared exit: what a call loses with copies off, on demand (the default) and always on.

As root, with a keyring:
    bash scripts/with-keyring.sh python3 -m benchmarks.bench_copies [--runs N]

Each run builds a fresh lab, sets the profile's settings.copies, connects the engine
with its default settings, waits until every path has been up for the hold-down (the
copies never go to a path in its hold-down), starts a call (200 packets/s x 200 B, DSCP
EF: class realtime, to the sticky echo) for 12 s and, 5 s in, takes realtime's path
down at its relay. Counted in packets at both ends (the far end counts duplicates), with
the path the copies were on at the kill, its loss and score then, and what the client's
tunnels carried against the call's own IP bytes (both copies and the probes).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import app.lab.register  # noqa: F401  (lab targets, as the CLI has them)
from app.core.decide import DecideConfig
from app.core.errors import BraidError
from app.core.model import EngineSnapshot, EventKind
from app.core.profiles.store import ProfileStore
from app.core.service import EngineService
from app.core.targets import ConnectTarget, lab_profile_name
from app.lab import control, stream, topology
from app.lab.topology import LabInfo
from benchmarks.enginelab import Watch, lab_name, wait_for
from benchmarks.record import Run

PPS, SIZE, DURATION, KILL_AT = 200, 200, 12.0, 5.0


@contextmanager
def connected(mode: str) -> Iterator[tuple[LabInfo, Watch]]:
    for attempt in range(3):  # a busy machine can be slow to start a lab's helper
        name = lab_name()
        try:
            lab = topology.build(name, "cn-us", exit="shared")
            break
        except BraidError:
            if attempt == 2:
                raise
    try:
        store = ProfileStore()
        prof = store.load(lab_profile_name(name))
        store.save(replace(prof, settings=replace(prof.settings, copies=mode)), {})
        rec = Watch()
        service = EngineService(rec)
        try:
            service.connect(ConnectTarget.for_lab(name))
            wait_for(lambda: rec.carrier("realtime") is not None, 40, "realtime placed")
            yield lab, rec
        finally:
            service.shutdown()
    finally:
        topology.destroy(name)


def tunnel_tx_bytes(lab: LabInfo) -> int:
    ns = topology.netns(lab.name, "client")
    total = 0
    for gw in lab.gateways:
        out = subprocess.run(["ip", "netns", "exec", ns, "ip", "-s", "-j", "link", "show",
                              gw.client_interface], capture_output=True, text=True).stdout
        doc = json.loads(out or "[]")
        total += int(doc[0]["stats64"]["tx"]["bytes"]) if doc else 0
    return total


def copies_counter(lab: LabInfo) -> int:
    ns = topology.netns(lab.name, "client")
    out = subprocess.run(["ip", "netns", "exec", ns, "nft", "list", "counter", "ip",
                          "braid_copy", "copies"], capture_output=True, text=True).stdout
    m = re.search(r"packets (\d+)", out)
    return int(m.group(1)) if m else 0


def relay_up_losses(lab: LabInfo) -> dict[str, dict[str, int]]:
    """Per path, what its relay dropped on the way up, wan and backbone (by cause)."""
    out = {}
    for p in control.status(lab.name)["paths"]:
        c, b = p["up"]["counters"], p["backbone"]["up"]["counters"]
        out[p["name"]] = {k: c[k] + b[k] for k in ("in_pkts", "lost_random", "lost_queue",
                                                   "lost_down")}
    return out


def path_at(snap: EngineSnapshot | None, name: str | None) -> dict[str, Any]:
    p = next((p for p in snap.paths if p.name == name), None) if snap else None
    return {} if p is None else {"loss_pct": round(100 * p.loss, 2), "score": round(p.score, 2)}


def one_run(mode: str) -> dict[str, Any]:
    with connected(mode) as (lab, rec):
        ups = [e.t for e in rec.events(EventKind.PATH_UP)]
        hold = DecideConfig().hold_down_s
        start = max(ups, default=time.time())
        wait_for(lambda: time.time() - start > hold + 1, hold + 30, "paths past the hold-down")
        tx0, cp0, relay0 = tunnel_tx_bytes(lab), copies_counter(lab), relay_up_losses(lab)
        t0 = time.time()
        call = stream.start(lab.name, pps=PPS, duration=DURATION, size=SIZE, cls="realtime",
                            sticky=True, wait=3.0)
        wait_for(lambda: time.time() - t0 > KILL_AT, KILL_AT + 5, "the kill")
        at_kill = rec.last
        primary = rec.carrier("realtime")
        copies = at_kill.copies if at_kill else ()
        control.impair(lab.name, primary or "", {"down": True})
        r = call.result()
        after = rec.last
        tx = tunnel_tx_bytes(lab) - tx0
        relay1 = relay_up_losses(lab)
        relay = {n: {k: v - relay0[n][k] for k, v in c.items()} for n, c in relay1.items()}
        unique_up = (r.sent * (1 - (r.up_loss_pct or 0) / 100))
        return {
            "mode": mode, "primary": primary, "copies_at_kill": list(copies),
            "copy_path_then": path_at(at_kill, copies[0]) if copies else {},
            "reason_at_kill": at_kill.copies_reason if at_kill else None,
            "sent": r.sent, "far_end_unique": round(unique_up),
            "far_end_duplicates": r.server_duplicates, "answers_back": r.received,
            "down_duplicates": r.down_duplicates, "up_loss_pct": r.up_loss_pct,
            "loss_pct": round(r.loss_pct, 3), "up_gap_ms": r.up_gap_ms,
            "down_gap_ms": r.down_gap_ms, "ignored": r.ignored, "sources": r.server_sources,
            "relay_up": relay, "lab_t_at_kill": round(control.status(lab.name)["t"] - (
                time.time() - t0 - KILL_AT), 1),
            "copied_packets": copies_counter(lab) - cp0,
            "tunnel_bytes_over_call": round(tx / (r.sent * (SIZE + 28)), 2),
            "realtime_after": after.classes.get("realtime") if after else None,
            "copies_after": list(after.copies) if after else None,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--modes", default="off,auto,always")
    args = parser.parse_args()
    with Run("bench_copies", vars(args)) as run:
        runs: dict[str, list[dict[str, Any]]] = {}
        for _ in range(args.runs):
            for mode in args.modes.split(","):
                one = one_run(mode)
                print(json.dumps(one), flush=True)
                runs.setdefault(mode, []).append(one)
        for mode, rs in runs.items():
            run.figures[mode] = {
                "runs": len(rs),
                "far_end_got": [r["far_end_unique"] for r in rs], "sent": rs[0]["sent"],
                "far_end_duplicates": sum(r["far_end_duplicates"] or 0 for r in rs),
                "cost_x": [r["tunnel_bytes_over_call"] for r in rs],
            }
            got = ", ".join(str(g) for g in run.figures[mode]["far_end_got"])
            print(f"copies {mode}: the far end got {got} of {rs[0]['sent']} "
                  f"({run.figures[mode]['far_end_duplicates']} duplicates); tunnels carried "
                  f"{', '.join(str(c) for c in run.figures[mode]['cost_x'])}x the call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
