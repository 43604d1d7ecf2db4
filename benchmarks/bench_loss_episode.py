"""Loss episode on the active path: how soon does traffic leave it, and what does a
stream already running on it lose, against a plain tunnel through the same path?

As root, with a keyring:
    bash scripts/with-keyring.sh python3 -m benchmarks.bench_loss_episode [--runs N]

Each run builds a fresh clean lab with a baseline (`braid lab up --baseline hk`: one
plain WireGuard tunnel through hk's relay, as a user without Braid has it), connects
the engine with its default settings, waits until tyo is eligible (up for the
hold-down), starts two identical streams on hk (200 packets/s for 10 s), one from
Braid's client and one from the baseline, then gives hk 10 % loss each way (19 % round
trip: a loss episode, not an outage). Prints per run the time from the episode's start
to the class leaving hk and how (a "better path" move, or a failover), and both
streams' loss over their 10 s; then the medians. The baseline stays at about 19 %.
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from app.core.decide import DecideConfig
from app.core.model import EventKind
from app.lab import control, stream
from benchmarks.enginelab import engine_on_lab, wait_for
from benchmarks.record import Run


def one_run(run: int) -> dict[str, float]:
    with engine_on_lab("clean", baseline="hk") as s:
        w = s.watch
        wait_for(lambda: w.carrier() == "hk", 30, "the class on hk")
        tyo_up = next(e for e in w.events(EventKind.PATH_UP) if e.to_path == "tyo").t
        hold = DecideConfig().hold_down_s
        wait_for(lambda: time.time() - tyo_up > hold + 1, hold + 30, "tyo past its hold-down")
        with ThreadPoolExecutor(2) as pool:
            running = pool.submit(stream.stream, s.lab.name, pps=200, duration=10.0, size=200)
            base = pool.submit(stream.stream, s.lab.name, pps=200, duration=10.0, size=200,
                               baseline=True)
            wait_for(lambda: w.last is not None and w.last.paths[0].tx_bps > 200_000, 10,
                     "the stream on hk")
            t0 = time.time()
            control.impair(s.lab.name, "hk", {"loss_pct": 10})
            wait_for(lambda: w.carrier() not in (None, "hk"), 20, "the class leaving hk")
            result, fixed = running.result(), base.result()
        left = next(e for e in w.events(EventKind.BETTER_PATH, EventKind.FAILOVER)
                    if e.from_path == "hk")
        how = left.reason.split(":")[0]
        print(f"run {run}: left hk after {left.t - t0:.2f} s ({how} to {left.to_path}), "
              f"stream loss {result.loss_pct:.2f} % (plain tunnel {fixed.loss_pct:.2f} %)",
              flush=True)
        return {"left_after_s": left.t - t0, "loss_pct": result.loss_pct,
                "baseline_loss_pct": fixed.loss_pct,
                "failover": float(left.kind is EventKind.FAILOVER)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with Run("bench_loss_episode", vars(args)) as run:
        results = [one_run(i) for i in range(args.runs)]
        med = {k: statistics.median(r[k] for r in results) for k in results[0]}
        run.figures.update(med)
        run.figures["runs"] = args.runs
        print(f"loss episode on the active path (19 % round trip), medians of {args.runs} "
              f"runs: left after {med['left_after_s']:.2f} s, running stream lost "
              f"{med['loss_pct']:.2f} % of 10 s against {med['baseline_loss_pct']:.2f} % on "
              f"a plain tunnel through the same path (ratio "
              f"{med['loss_pct'] / max(med['baseline_loss_pct'], 1e-9):.2f})")


if __name__ == "__main__":
    main()
