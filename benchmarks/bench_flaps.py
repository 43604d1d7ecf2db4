"""Flaps on cn-us: how often the engine moves traffic, and how many moves were needed.

As root, with a keyring:
    bash scripts/with-keyring.sh python3 -m benchmarks.bench_flaps [--minutes M]

Runs the engine with its default settings on a fresh cn-us lab for M minutes (default
10; the scenario's timeline has a loss episode on tyo at 60 s, an outage of hk at
120 s, a slow drift on sgp and seeded random congestion episodes). Every move of the
default class is counted:
- failovers (the path was declared down) and restores are needed by definition;
- a voluntary move (a better path by the margin) away from a path that still scored
  above 0 is a *flap* when the class moves back to the path it left within 60 s without
  that path having gone down in between; a move away from a path scoring 0 (loss over
  5 %) is needed, and so is the move back once that path is better by the margin again.
Prints the moves, the flaps, and the moves as a list with their reasons.
"""

from __future__ import annotations

import argparse
import time

from app.core.model import Event, EventKind
from benchmarks.enginelab import engine_on_lab

FLAP_WINDOW_S = 60.0


def classify(moves: list[Event], downs: list[Event]) -> list[tuple[Event, bool]]:
    """(move, needed) for every move."""
    out = []
    for i, ev in enumerate(moves):
        needed = True
        left_usable = ev.metrics.get("from_score", 0.0) > 0
        if ev.reason.startswith("better path") and ev.from_path and left_usable:
            back = next((m for m in moves[i + 1:] if m.to_path == ev.from_path), None)
            if back is not None and back.t - ev.t <= FLAP_WINDOW_S:
                went_down = any(d.from_path == ev.from_path and ev.t <= d.t <= back.t
                                for d in downs)
                needed = went_down
        out.append((ev, needed))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args()
    with engine_on_lab("cn-us") as s:
        t0 = time.time()
        end = time.monotonic() + args.minutes * 60
        seen: dict[int, Event] = {}
        while time.monotonic() < end:
            for e in s.watch.events():  # the snapshot keeps the last 200 events
                seen[e.seq] = e
            time.sleep(1.0)
        for e in s.watch.events():
            seen[e.seq] = e
    events = sorted(seen.values(), key=lambda e: e.seq)
    kinds = (EventKind.BETTER_PATH, EventKind.FAILOVER, EventKind.BLOCKED, EventKind.RESTORED)
    moves = [e for e in events if e.kind in kinds and e.from_path is not None]
    downs = [e for e in events if e.kind is EventKind.PATH_DOWN]
    judged = classify(moves, downs)
    flaps = sum(1 for _, needed in judged if not needed)
    print(f"cn-us, {args.minutes:g} min, engine defaults: {len(moves)} moves, "
          f"{len(moves) - flaps} needed, {flaps} flaps; {len(downs)} paths declared down")
    for ev, needed in judged:
        print(f"  t={ev.t - t0:7.1f} s {ev.from_path}->{ev.to_path or 'CLOSED'} "
              f"{'needed' if needed else 'FLAP'}: {ev.reason}")


if __name__ == "__main__":
    main()
