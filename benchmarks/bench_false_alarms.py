"""False alarms: cn-us for M minutes with saturating uploads and downloads on every path
in turn; how many paths are declared down, and how many of those were real outages?

As root, with a keyring:
    bash scripts/with-keyring.sh python3 -m benchmarks.bench_false_alarms [--minutes M]

For each engine, one after the other in the same run (the timeline is the same for
both): a fresh cn-us lab, the engine connected, then for M minutes, path after path,
a 4-flow TCP upload for 20 s and a 4-flow download for 20 s bound to that path's tunnel
(benchmarks/loadgen.py), while the scenario's own episodes come and go (a loss episode
on tyo at 60 s, an outage of hk at 120-125 s, the sgp drift, random congestion).
- **braid**: the shipped defaults;
- **baseline**: the detection this issue replaced (50 ms probes, a reply late by 20 ms
  is missed, no late allowance, no passive signal).
A down is *real* when its path was in one of the scenario's outages (from its start to
2 s after its end); every other down is false. Aim: 0 false. Evasions (class default
routing around a silent path on this shared exit, decide.py) are counted the same way:
one off a path in no outage is for nothing (it costs a move there and back, no flow).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any

from app.core.engine import EngineConfig
from app.core.liveness import LivenessConfig
from app.core.model import Event, EventKind
from app.core.probe import ProbeRates
from app.lab import topology
from app.lab.model import EXITS, SEPARATE
from app.lab.scenario import load_scenario
from benchmarks.bench_flaps import Timeline
from benchmarks.enginelab import engine_on_lab
from benchmarks.record import Run

ENGINES = {
    "braid": EngineConfig(),
    "baseline": replace(EngineConfig(), rates=ProbeRates(active_s=0.050, backup_s=0.200),
                        liveness=LivenessConfig(late_step_s=0.0, passive=False)),
}
LOAD_S, FLOWS, REAL_SLACK_S = 20.0, 4, 2.0


def outages(scenario: str) -> list[tuple[str, float, float]]:
    return [(e.path, e.at_s, e.at_s + (e.for_s or 1e9)) for e in load_scenario(scenario).timeline
            if dict(e.changes).get("down") is True]


def load(lab: str, source: str, down: bool) -> dict[str, Any]:
    argv = topology.python_argv("benchmarks.loadgen", "--source", source, "--seconds",
                                str(LOAD_S), "--flows", str(FLOWS), *(["--down"] if down else []))
    doc: dict[str, Any] = topology.run_json(lab, "client", argv, timeout=LOAD_S + 60)
    return doc


def one_engine(cfg: EngineConfig, minutes: float, exit: str) -> dict[str, Any]:
    tl = Timeline()  # every event of the run (a snapshot holds the last 200)
    with engine_on_lab("cn-us", config=cfg, watch=tl, exit=exit) as s:
        t0 = s.lab.started_at
        sources = [(g.name, g.client_address.split("/")[0]) for g in s.lab.gateways]
        end = time.monotonic() + minutes * 60
        loads: list[dict[str, Any]] = []
        i = 0
        while time.monotonic() < end:
            name, source = sources[(i // 2) % len(sources)]
            started = time.time() - t0
            r = load(s.lab.name, source, down=bool(i % 2))
            loads.append({"path": name, "start": started, "t": time.time() - t0, **r})
            print(f"  t={time.time() - t0:6.1f} s {name:4} {r['direction']:4} "
                  f"{r['mbit_s']:6.1f} Mbit/s, {r['resets']} resets", flush=True)
            i += 1
    run = sorted(tl.events.values(), key=lambda e: e.seq)
    real = outages("cn-us")

    def in_outage(e: Event) -> bool:
        return any(p == e.from_path and a <= e.t - t0 <= b + REAL_SLACK_S for p, a, b in real)

    downs = [{"t": e.t - t0, "path": e.from_path, "real": in_outage(e), "reason": e.reason}
             for e in run if e.kind is EventKind.PATH_DOWN]
    evaded = [e for e in run if e.kind is EventKind.EVADED]
    idle = [e for e in evaded if not in_outage(e)]

    def under(e: Event) -> str:
        """The load running when ``e`` happened (our own traffic on which path)."""
        r = next((r for r in loads if r["start"] <= e.t - t0 <= r["t"]), None)
        return "no load" if r is None else f"{r['path']} {r['direction']}load"

    return {"evasions": len(evaded), "evasions_for_nothing": len(idle),
            "evasion_list": [f"t={e.t - t0:.1f} s {e.from_path}->{e.to_path} under {under(e)}"
                             f"{'' if in_outage(e) else ' (for nothing)'}: {e.reason}"
                             for e in evaded],
            "downs": len(downs), "real": sum(d["real"] for d in downs),
            "false": sum(not d["real"] for d in downs), "list": downs,
            "loads": len(loads), "resets": sum(r["resets"] for r in loads),
            "mean_mbit_s": sum(r["mbit_s"] for r in loads) / max(1, len(loads))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--exit", choices=EXITS, default=SEPARATE,
                    help="each gateway its own exit (the default), or one shared exit, where "
                    "class default evades a silent path")
    args = ap.parse_args()
    with Run("bench_false_alarms", vars(args)) as run:
        for name, cfg in ENGINES.items():
            print(f"{name}:", flush=True)
            run.figures[name] = f = one_engine(cfg, args.minutes, args.exit)
            for d in f["list"]:
                print(f"  down at t={d['t']:.1f} s {d['path']}: "
                      f"{'real' if d['real'] else 'FALSE'} ({d['reason']})")
            for line in f["evasion_list"]:
                print(f"  evasion at {line}")
        print(f"cn-us ({args.exit} exits), {args.minutes:g} min, saturating each path in turn:")
        for name in ENGINES:
            f = run.figures[name]
            print(f"  {name:9} downs {f['downs']}, real {f['real']}, false {f['false']} "
                  f"(aim 0); {f['loads']} loads, {f['resets']} flows reset; "
                  f"{f['evasions']} evasions, {f['evasions_for_nothing']} off a path "
                  "in no outage")


if __name__ == "__main__":
    main()
