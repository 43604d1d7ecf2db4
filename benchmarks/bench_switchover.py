"""Switchover: kill the active path under a 1000 packet/s stream; how long is the gap?

As root, with a keyring:
    bash scripts/with-keyring.sh python3 -m benchmarks.bench_switchover [--runs N]

For each scenario (cn-us and clean), each run builds a fresh lab, connects the engine
with its default settings (probes every 50 ms on the active path), starts a UDP stream
at 1000 packets/s from the client to the far server and back (`braid lab stream`), and
once the stream flows, takes the active path down at its relay (100 % loss both ways).
Reported per scenario, medians over the runs:
- detection: from the failed path's last answered probe to "declared down" (engine);
- switch: from the failover decision to the helper's reply (rules in the kernel);
- the stream's longest gap between echoes arriving back at the client, less the
  1 ms spacing (LAB's figure: it includes one round trip on the new path, as the
  echoes that resume come the new way);
- next to the failed path's one-way delay, and the documented detection bound
  (one-way delay + K x 50 ms + 20 ms margin, liveness.py).
Seed's target: switchover under 100 ms; aim: detection within the failed path's one-way
delay plus three probe intervals, switch under 5 ms.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor

from app.core.engine import EngineConfig
from app.core.model import EventKind
from app.lab import control, stream
from app.lab.scenario import load_scenario
from benchmarks.enginelab import engine_on_lab, fmt, median, wait_for


def one_run(scenario: str) -> dict[str, float]:
    cfg = EngineConfig()
    with engine_on_lab(scenario, config=cfg) as s:
        wait_for(lambda: s.watch.last is not None and s.watch.last.state.value == "connected",
                 30, "connected")
        active = s.watch.carrier()
        assert active is not None
        spec = load_scenario(scenario).path(active)
        owd = spec.down.delay_ms  # back from the relay, where the failure is, to the client
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(stream.stream, s.lab.name, pps=1000, duration=5.0, size=200)
            idx = [p.name for p in s.watch.last.paths].index(active)  # type: ignore[union-attr]
            wait_for(lambda: s.watch.last is not None
                     and s.watch.last.paths[idx].tx_bps > 500_000, 15, "the stream to flow")
            control.impair(s.lab.name, active, {"down": True})
            wait_for(lambda: s.watch.carrier() not in (None, active), 10, "the failover")
            result = running.result(timeout=60)
        ev = next(e for e in s.watch.events(EventKind.FAILOVER) if e.from_path == active)
        to_rtt = next(p.rtt_smoothed_ms for p in s.watch.last.paths  # type: ignore[union-attr]
                      if p.name == ev.to_path)
        counters = s.watch.last.counters  # type: ignore[union-attr]
        return {
            "detection_ms": ev.detection_ms or float("nan"),
            "switch_ms": ev.switch_ms or float("nan"),
            "gap_ms": result.max_gap_ms or float("nan"),
            "owd_ms": owd,
            "new_rtt_ms": to_rtt or float("nan"),
            "bound_ms": owd + cfg.liveness.base_down_after * cfg.rates.active_s * 1000
            + cfg.liveness.min_margin_s * 1000,
            "apply_ms": counters.apply_ms_last or float("nan"),
            "loss_pct": result.loss_pct,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--scenarios", default="cn-us,clean")
    args = ap.parse_args()
    print("switchover, medians of", args.runs, "runs (engine defaults: active probes 50 ms)")
    print(f"{'scenario':9} {'one-way':>10} {'bound':>10} {'detection':>10} {'switch':>10} "
          f"{'apply':>9} {'gap':>10} {'new RTT':>10} {'gap-RTT':>10}")
    for scenario in args.scenarios.split(","):
        runs = [one_run(scenario) for _ in range(args.runs)]

        def m(key: str, runs: list[dict[str, float]] = runs) -> float:
            return median([r[key] for r in runs])

        print(f"{scenario:9} {fmt(m('owd_ms')):>10} {fmt(m('bound_ms')):>10} "
              f"{fmt(m('detection_ms')):>10} {fmt(m('switch_ms')):>10} {fmt(m('apply_ms')):>9} "
              f"{fmt(m('gap_ms')):>10} {fmt(m('new_rtt_ms')):>10} "
              f"{fmt(m('gap_ms') - m('new_rtt_ms')):>10}")
        print("          detection/bound = "
              f"{m('detection_ms') / m('bound_ms'):.2f}; switch vs 5 ms target = "
              f"{m('switch_ms') / 5:.1f}x; gap vs seed's 100 ms = {m('gap_ms') / 100:.1f}x")


if __name__ == "__main__":
    main()
