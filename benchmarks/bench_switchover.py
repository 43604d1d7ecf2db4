"""Switchover: kill the active path under a 1000 packet/s stream; how long is the gap?

As root, with a keyring:
    bash scripts/with-keyring.sh python3 -m benchmarks.bench_switchover [--runs N]

For each scenario (clean and cn-us) and each engine, each run builds a fresh lab with a
shared exit (so a switch breaks nothing: the gap is the engine's alone), connects the
engine, starts a UDP stream at 1000 packets/s to the far server's sticky echo and back
(`braid lab stream --sticky`: the far end counts what it receives, so each direction's
gap is measured at its own receiver), and once the stream flows takes the active path
down at its relay (100 % loss both ways). The engines, alternating run by run in the
same invocation:
- **braid**: the shipped defaults (carried path probed every 10 ms, down on silence,
  liveness.py);
- **braid, no evasion**: the same without routing class default around a silent path
  before its verdict (decide.py): the class moves at the failover;
- **baseline**: the probing this issue replaced: 50 ms on the carried path, no
  allowance for late replies, no passive signal, no evasion.
Reported per scenario and engine, medians over the runs:
- detection: from the moment the benchmark took the path down to "declared down";
- left: from then to class default's decision to leave the path (an evasion, or the
  failover);
- switch: from that decision to the helper's reply (rules in the kernel);
- the stream's gaps: per direction at each receiver (upstream at the far end,
  downstream at the client), and the longest gap
  between echoes back at the client (it includes one round trip on the new path);
- the floor of the downstream gap (down_floor_ms): the far end's answers lost in flight
  or sent the old way before anything from the client can reach the exit;
- next to the failed path's one-way delay back from the relay and the documented
  bound (one-way delay + one probe interval + the silence limit in force).
Seed's target: switchover under 100 ms; aim: detection within one-way delay + 30 ms.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from app.core.engine import EngineConfig
from app.core.liveness import LivenessConfig
from app.core.model import EventKind
from app.core.probe import ProbeRates
from app.lab import control, stream
from app.lab.model import SHARED
from app.lab.scenario import PathSpec, load_scenario
from benchmarks.enginelab import engine_on_lab, fmt, median, wait_for
from benchmarks.record import Run

ENGINES = {
    "braid": EngineConfig(),
    "no-evasion": replace(EngineConfig(), evade=False),
    "baseline": replace(EngineConfig(), rates=ProbeRates(active_s=0.050), evade=False,
                        liveness=LivenessConfig(late_step_s=0.0, passive=False)),
}
NAN = float("nan")


def down_floor_ms(spec: PathSpec) -> float:
    """The downstream gap no client can shorten without copies, on a shared exit (the
    lab's relay drops a dead link's packets as they arrive; those already inside it go
    on). The exit answers through the path each packet came in on, so every answer sent
    within one backbone delay before the failure reaches the dead relay and is lost; and
    the upstream already past the relay (its one-way delay up) and in the backbone still
    reaches the exit, whose answers go the same way. Nothing the client decides reaches
    the exit sooner; the answers after those are to the stream sent by the new path."""
    return spec.backbone_down.delay_ms + spec.up.delay_ms + spec.backbone_up.delay_ms


def one_run(scenario: str, cfg: EngineConfig) -> dict[str, float]:
    with engine_on_lab(scenario, config=cfg, exit=SHARED) as s:
        wait_for(lambda: s.watch.last is not None and s.watch.last.state.value == "connected",
                 30, "connected")
        with ThreadPoolExecutor(1) as pool:
            # The sticky echo counts what reaches the far end: the gaps per direction.
            running = pool.submit(stream.stream, s.lab.name, pps=1000, duration=5.0, size=200,
                                  sticky=True)

            def carrying() -> str | None:
                snap, name = s.watch.last, s.watch.carrier()
                return name if snap is not None and any(
                    p.name == name and p.tx_bps > 500_000 for p in snap.paths) else None
            # Default's path once the stream shows there (cn-us's episodes may have moved
            # the class since connecting).
            active = wait_for(carrying, 15, "the stream to flow on default's path")
            spec = load_scenario(scenario).path(active)
            owd = spec.down.delay_ms  # relay -> client
            t_fail = time.time()
            control.impair(s.lab.name, active, {"down": True})
            wait_for(lambda: any(e.from_path == active for e in s.watch.events(
                EventKind.FAILOVER)), 10, "the failover")
            result = running.result(timeout=60)
        down = next(e for e in s.watch.events(EventKind.PATH_DOWN) if e.from_path == active)
        ev = next(e for e in s.watch.events(EventKind.FAILOVER) if e.from_path == active)
        left = next(e for e in s.watch.events() if e.cls == "default" and e.from_path == active
                    and e.kind in (EventKind.EVADED, EventKind.FAILOVER))
        last = s.watch.last
        to_rtt = next(p.rtt_smoothed_ms for p in last.paths if p.name == ev.to_path)
        up_gap, down_gap = (getattr(result, k, None) for k in ("up_gap_ms", "down_gap_ms"))
        return {
            "detection_ms": (down.t - t_fail) * 1000,
            "left_ms": (left.t - t_fail) * 1000,
            "silence_ms": down.detection_ms if down.detection_ms is not None else NAN,
            "switch_ms": left.switch_ms if left.switch_ms is not None else NAN,
            "echo_gap_ms": result.max_gap_ms if result.max_gap_ms is not None else NAN,
            "up_gap_ms": up_gap if up_gap is not None else NAN,
            "down_gap_ms": down_gap if down_gap is not None else NAN,
            "owd_ms": owd,
            "down_floor_ms": down_floor_ms(spec),
            "new_rtt_ms": to_rtt if to_rtt is not None else NAN,
            "bound_ms": owd + cfg.rates.active_s * 1000 + down.metrics.get(
                "silence_limit_ms", NAN),
            "loss_pct": result.loss_pct,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scenarios", default="clean,cn-us")
    args = ap.parse_args()
    keys = ("owd_ms", "bound_ms", "detection_ms", "left_ms", "silence_ms", "switch_ms",
            "up_gap_ms", "down_gap_ms", "down_floor_ms", "echo_gap_ms", "new_rtt_ms")
    with Run("bench_switchover", vars(args)) as run:
        print(f"switchover, medians of {args.runs} runs per engine (braid: shipped defaults; "
              "no-evasion: without routing around a silent path; baseline: 50 ms probes, no "
              "late allowance, no passive signal)")
        print(f"{'scenario':9} {'engine':9} " + " ".join(f"{k[:-3]:>10}" for k in keys))
        for scenario in args.scenarios.split(","):
            runs: dict[str, list[dict[str, float]]] = {e: [] for e in ENGINES}
            for _ in range(args.runs):  # alternating: both see the same machine
                for name, cfg in ENGINES.items():
                    runs[name].append(one_run(scenario, cfg))
            out = {}
            for name in ENGINES:
                med = {k: median([r[k] for r in runs[name]]) for k in keys}
                med["runs"] = len(runs[name])
                out[name] = med
                print(f"{scenario:9} {name:9} " + " ".join(f"{fmt(med[k]):>10}" for k in keys))
            b, o = out["braid"], out["baseline"]
            ratio = b["detection_ms"] / o["detection_ms"]
            gaps = b["echo_gap_ms"] / o["echo_gap_ms"]
            print(f"          braid/baseline: detection {ratio:.2f}, echo gap {gaps:.2f}; "
                  f"braid's detection - one-way delay = {b['detection_ms'] - b['owd_ms']:.0f} "
                  f"ms (aim 30); within its bound: {b['detection_ms'] <= b['bound_ms']}; "
                  f"default left {b['left_ms'] - b['owd_ms']:.0f} ms after the one-way delay "
                  "(aim 30); "
                  f"gap up {b['up_gap_ms']:.0f} ms against {out['no-evasion']['up_gap_ms']:.0f} "
                  "without evasion (aim 100); "
                  f"gap down {b['down_gap_ms']:.0f} ms, its floor {b['down_floor_ms']:.0f} ms "
                  "(aim 100)")
            run.figures[scenario] = out


if __name__ == "__main__":
    main()
