"""What the user sees on cn-us: Braid against the single-path VPN, in the same run.

As root, with a keyring:
    bash scripts/with-keyring.sh python3 -m benchmarks.bench_user_view [--seconds S]

Builds the cn-us lab with its baseline (`braid lab up --baseline us`: one plain
WireGuard tunnel through the direct US path, as a user without Braid has it), connects
Braid in the client namespace, and runs two identical realtime-like streams at once
(`braid lab stream`, 100 packets/s of 200 bytes), one from Braid's client and one from
the baseline's namespace, so both see the same congestion episodes. Prints one-way
delay (client -> server: mean and p95), round-trip loss and stutter (30 fps frames lost
or later than 150 ms) for both, their ratios, and the seed's figures beside them (the
seed reports 280 ms -> 182 ms and 8 % -> under 0.5 %; its 280/182 ms are round-trip
figures, so the RTT medians are printed too).
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor

from app.core.model import EventKind
from app.lab import stream
from app.lab.stream import StreamResult
from benchmarks.enginelab import engine_on_lab, fmt, wait_for
from benchmarks.record import Run


def row(name: str, r: StreamResult) -> str:
    up = r.delay_up
    return (f"{name:9} {fmt(up.mean if up else None):>11} {fmt(up.p95 if up else None):>11} "
            f"{fmt(r.rtt.p50 if r.rtt else None):>11} {r.loss_pct:>7.2f} % "
            f"{r.stutter_pct:>8.2f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--pps", type=int, default=100)
    args = ap.parse_args()
    with engine_on_lab("cn-us", baseline="us") as s:
        wait_for(lambda: s.watch.last is not None
                 and s.watch.last.state.value in ("connected", "degraded"), 30, "connected")
        with ThreadPoolExecutor(2) as pool:
            braid = pool.submit(stream.stream, s.lab.name, pps=args.pps,
                                duration=args.seconds, size=200)
            base = pool.submit(stream.stream, s.lab.name, pps=args.pps,
                               duration=args.seconds, size=200, baseline=True)
            rb, rs = braid.result(), base.result()
        switches = [e for e in s.watch.events(EventKind.BETTER_PATH, EventKind.FAILOVER)]
    print(f"cn-us, {args.seconds:g} s at {args.pps} packets/s, both streams at once")
    print(f"{'':9} {'delay mean':>11} {'delay p95':>11} {'RTT p50':>11} {'loss':>9} "
          f"{'stutter':>10}")
    print(row("baseline", rs))
    print(row("braid", rb))
    if rb.delay_up and rs.delay_up:
        print(f"ratio     {rb.delay_up.mean / rs.delay_up.mean:>11.2f} "
              f"{rb.delay_up.p95 / rs.delay_up.p95:>11.2f} "
              + (f"{rb.rtt.p50 / rs.rtt.p50:>11.2f}" if rb.rtt and rs.rtt else f"{'-':>11}")
              + (f" {rb.loss_pct / rs.loss_pct:>9.2f}" if rs.loss_pct else ""))
    print("seed      280 ms -> 182 ms (round trip), 8 % -> under 0.5 % loss")
    with Run("bench_user_view", vars(args)) as run:
        for name, r in (("baseline", rs), ("braid", rb)):
            run.figures[name] = {
                "delay_mean_ms": r.delay_up.mean if r.delay_up else None,
                "delay_p95_ms": r.delay_up.p95 if r.delay_up else None,
                "rtt_p50_ms": r.rtt.p50 if r.rtt else None,
                "loss_pct": r.loss_pct, "stutter_pct": r.stutter_pct}
        run.figures["switches"] = len(switches)
    print(f"engine switches during the run: {len(switches)} "
          + ", ".join(f"{e.from_path}->{e.to_path}" for e in switches))


if __name__ == "__main__":
    main()
