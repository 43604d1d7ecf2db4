"""Loss episode on the active path: how soon does traffic leave it, and what does a
stream already running on it lose?

As root, with a keyring:
    bash scripts/with-keyring.sh python3 -m benchmarks.bench_loss_episode [--runs N]

Each run builds a fresh clean lab, connects the engine with its default settings, waits
until tyo is eligible (up for the hold-down), starts a stream on hk (200 packets/s for
10 s), then gives hk 10 % loss each way (19 % round trip: a loss episode, not an
outage). Prints per run the time from the episode's start to the class leaving hk and
how (a "better path" move, or a failover when hk happened to miss K probes in a row),
and the stream's loss over its 10 s; then the medians. A stream that stays at about
19 % was left behind on hk by flow stickiness.
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


def one_run(run: int) -> tuple[float, float]:
    with engine_on_lab("clean") as s:
        w = s.watch
        wait_for(lambda: w.carrier() == "hk", 30, "the class on hk")
        tyo_up = next(e for e in w.events(EventKind.PATH_UP) if e.to_path == "tyo").t
        hold = DecideConfig().hold_down_s
        wait_for(lambda: time.time() - tyo_up > hold + 1, hold + 30, "tyo past its hold-down")
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(stream.stream, s.lab.name, pps=200, duration=10.0, size=200)
            wait_for(lambda: w.last is not None and w.last.paths[0].tx_bps > 200_000, 10,
                     "the stream on hk")
            t0 = time.time()
            control.impair(s.lab.name, "hk", {"loss_pct": 10})
            wait_for(lambda: w.carrier() not in (None, "hk"), 20, "the class leaving hk")
            result = running.result()
        left = next(e for e in w.events(EventKind.BETTER_PATH, EventKind.FAILOVER)
                    if e.from_path == "hk")
        how = left.reason.split(":")[0]
        print(f"run {run}: left hk after {left.t - t0:.2f} s ({how} to {left.to_path}), "
              f"stream loss {result.loss_pct:.2f} %", flush=True)
        return left.t - t0, result.loss_pct


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    results = [one_run(i) for i in range(args.runs)]
    print(f"loss episode on the active path (19 % round trip), medians of {args.runs} runs: "
          f"left after {statistics.median(r[0] for r in results):.2f} s, running stream "
          f"lost {statistics.median(r[1] for r in results):.2f} % of 10 s")


if __name__ == "__main__":
    main()
