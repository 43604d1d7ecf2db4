"""Flaps and early warning on cn-us: how often the engine moves traffic without a
reason in the scenario, against an engine without hysteresis in the same run; and how
much earlier than the plain score the change detector reacts to each episode.

As root, with a keyring:
    bash scripts/with-keyring.sh python3 -m benchmarks.bench_flaps [--minutes M]

Two fresh cn-us labs at once (the scenario's timeline is the same in both: a loss
episode on tyo at 60 s, an outage of hk at 120 s, a slow drift on sgp from 30 s, seeded
random congestion episodes), one with the shipped engine, one with the **baseline**:
the same engine with margin, dwell and hold-down at 0 (always the best path now).

Moves, counted honestly from the scenario's own timeline (which the benchmark knows):
a move is *explained* when the path it leaves is in one of its episodes (from the
episode's start to 10 s after its end, the loss window's memory) or was declared down,
or when it returns to a path whose episode that made the class leave has ended. Every
other move is a **flap**, whatever the scores said (a move off a path scoring 0 and
back is a flap too when the scenario did nothing to that path). Evasions (class default
routing around a silent path on the shared exit, and back at its next reply: decide.py)
are counted apart, with the same rule: an evasion off a path in no episode of its own
and not declared down within 5 s is one **for nothing**; with how long default stayed
away.

Early warning (the shipped engine's snapshots, 10 Hz): for each episode, the delay from
its start to the path's first ``degrading`` and to its plain score's first reaction (a
margin, 0.10, under its median of the 10 s before, or 0; paths already at 0 are left
out); and the warnings that fall in no episode of their path (fired for nothing), per
hour.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from app.core.decide import DecideConfig
from app.core.engine import EngineConfig
from app.core.model import EngineSnapshot, Event, EventKind
from app.lab.model import EXITS, SEPARATE
from app.lab.scenario import load_scenario
from benchmarks.enginelab import engine_on_lab
from benchmarks.record import Run

MEMORY_S = 10.0  # an episode's effect on the scores outlasts it by the loss window
SCORE_DROP = DecideConfig().margin  # a fall that could move a class
MOVES = (EventKind.BETTER_PATH, EventKind.FAILOVER, EventKind.BLOCKED, EventKind.RESTORED)
BASELINE = replace(EngineConfig(), decide=DecideConfig(
    margin=0.0, dwell_s=0.0, unusable_dwell_s=0.0, degrading_dwell_s=0.0, hold_down_s=0.0))


@dataclass(frozen=True)
class Episode:
    path: str
    start: float  # seconds from the lab's start
    end: float
    what: str


def episodes(scenario: str, until: float) -> list[Episode]:
    scen = load_scenario(scenario)
    # A path the scenario makes lossy for good (cn-us's us: 4.2 % each way) is in an
    # episode all along: leaving it is never a flap.
    out = [Episode(p.name, 0.0, until, f"loss {p.up.loss_pct:g} % each way for good")
           for p in scen.paths if p.up.loss_pct + p.down.loss_pct >= 5.0]
    for e in scen.timeline:
        if e.at_s > until:
            continue
        what = ", ".join(f"{k}={v}" for k, v in e.changes) + (" (ramp)" if e.ramp else "")
        end = e.at_s + (e.for_s or until) if not e.ramp else until  # a ramp stays
        out.append(Episode(e.path, e.at_s, end, what))
    return out


@dataclass
class Timeline:
    """Every snapshot's per-path figures and every event, from the engine thread."""

    samples: list[tuple[float, dict[str, tuple[float, bool, str | None]]]] = field(
        default_factory=list)
    events: dict[int, Event] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    last: EngineSnapshot | None = None

    def __call__(self, snap: EngineSnapshot) -> None:
        with self.lock:
            self.last = snap
            self.samples.append((snap.t, {p.name: (p.score, p.up, p.degrading)
                                          for p in snap.paths}))
            for e in snap.events:
                self.events[e.seq] = e

    def carrier(self) -> str | None:
        snap = self.last
        return snap.classes["default"][0] if snap and snap.classes.get("default") else None


def run_engine(cfg: EngineConfig, minutes: float, exit: str) -> tuple[float, Timeline]:
    tl = Timeline()
    with engine_on_lab("cn-us", config=cfg, watch=tl, exit=exit) as s:
        end = time.monotonic() + minutes * 60
        while time.monotonic() < end:
            time.sleep(1.0)
        return s.lab.started_at, tl


def classify(moves: list[Event], downs: list[Event], eps: list[Episode],
             t0: float) -> list[tuple[Event, str]]:
    """(move, why) with why "explained: ..." or "FLAP"."""
    out = []
    left_for: dict[tuple[str | None, str], Episode | str] = {}  # (class, path) -> why
    for ev in moves:
        t = ev.t - t0
        why = "FLAP"
        src, dst = ev.from_path, ev.to_path
        ep = next((e for e in eps if e.path == src and e.start <= t <= e.end + MEMORY_S), None)
        down = any(d.from_path == src and abs(d.t - ev.t) < 5 for d in downs)
        if ev.kind in (EventKind.FAILOVER, EventKind.BLOCKED) or down:
            why = "explained: left a path declared down"
        elif ep is not None:
            why = f"explained: {src} in its episode ({ep.what} at {ep.start:.0f} s)"
        elif "kept off" in ev.reason:
            why = "explained: placed by another class (bulk keeps off realtime's path)"
        elif dst is not None and (ev.cls, dst) in left_for:
            cause = left_for[(ev.cls, dst)]
            if isinstance(cause, str) or t >= cause.end:
                why = f"explained: back to {dst} after its episode"
        if src is not None and why != "FLAP" and not why.startswith("explained: back"):
            left_for[(ev.cls, src)] = ep if ep is not None else "down"
        out.append((ev, why))
    return out


def evasion_figures(events: list[Event], downs: list[Event], eps: list[Episode],
                    t0: float) -> dict[str, object]:
    """Evasions, those for nothing (module docstring), and the time away (to the
    return, or to whatever move ended it)."""
    evaded = [e for e in events if e.kind is EventKind.EVADED]
    idle, away = [], []
    for ev in evaded:
        t = ev.t - t0
        in_episode = any(e.path == ev.from_path and e.start - 1 <= t <= e.end + MEMORY_S
                         for e in eps)
        down = any(d.from_path == ev.from_path and 0 <= d.t - ev.t < 5 for d in downs)
        if not (in_episode or down):
            idle.append(f"t={t:.1f} s {ev.from_path}->{ev.to_path}: {ev.reason}")
        end = next((e for e in events if e.seq > ev.seq and e.cls == ev.cls
                    and (e.kind is EventKind.RETURNED or e.kind in MOVES)), None)
        if end is not None:
            away.append((end.t - ev.t) * 1000)
    return {"evasions": len(evaded), "evasions_for_nothing": len(idle),
            "evasion_away_ms_median": statistics.median(away) if away else None,
            "evasions_for_nothing_at": idle}


def flap_figures(t0: float, tl: Timeline, eps: list[Episode]) -> dict[str, object]:
    events = sorted(tl.events.values(), key=lambda e: e.seq)
    moves = [e for e in events if e.kind in MOVES and e.from_path is not None]
    downs = [e for e in events if e.kind is EventKind.PATH_DOWN]
    judged = classify(moves, downs, eps, t0)
    return {"moves": len(moves), "flaps": sum(1 for _, w in judged if w == "FLAP"),
            **evasion_figures(events, downs, eps, t0),
            "downs": len(downs),
            "down_list": [f"t={e.t - t0:.1f} s {e.reason}" for e in downs],
            "list": [f"t={e.t - t0:.1f} s {e.cls} {e.from_path}->{e.to_path or 'CLOSED'} {w}: "
                     f"{e.reason}" for e, w in judged]}


Scores = list[tuple[float, dict[str, float]]]  # (seconds from the lab's start, path -> score)


def score_reactions(samples: Scores, eps: list[Episode],
                    hold_s: float = 0.0) -> dict[int, float | None]:
    """Episode index -> seconds from its start to the plain score's first reaction (a
    margin under its median of the 10 s before, or 0), held for ``hold_s`` (None: none;
    paths already at 0 are left out: the score cannot react)."""
    out: dict[int, float | None] = {}
    for i, ep in enumerate(eps):
        before = [s[ep.path] for t, s in samples if ep.start - 10 <= t < ep.start and ep.path in s]
        ref = statistics.median(before) if before else None
        if ref is None or ref == 0.0:
            continue
        low = [(t, s[ep.path] <= ref - SCORE_DROP or s[ep.path] == 0.0)
               for t, s in samples if t >= ep.start and ep.path in s]
        since: float | None = None
        out[i] = None
        for t, is_low in low:
            since = (since if since is not None else t) if is_low else None
            if since is not None and t - since >= hold_s:
                out[i] = since - ep.start
                break
    return out


def judge_warnings(eps: list[Episode], samples: Scores, warned: list[tuple[float, str]],
                   minutes: float, hold_s: float) -> dict[str, Any]:
    """The warnings (seconds from the lab's start, path) against the plain score's
    reactions to each episode, first dip and held for ``hold_s``: leads, and warnings in
    no episode of their path (for nothing)."""
    score = score_reactions(samples, eps)
    held = score_reactions(samples, eps, hold_s)
    rows, leads, held_leads = [], [], []
    for i, after in score.items():
        ep = eps[i]
        w = next((t for t, n in warned if n == ep.path and ep.start - 1 <= t <= ep.end + MEMORY_S),
                 None)
        warn = None if w is None else w - ep.start
        held_after = held.get(i)
        rows.append({"path": ep.path, "start_s": ep.start, "what": ep.what,
                     "warning_after_s": warn, "score_after_s": after,
                     "score_held_after_s": held_after})
        if warn is not None and after is not None:
            leads.append(after - warn)
        if warn is not None and held_after is not None:
            held_leads.append(held_after - warn)
    idle = [(t, n) for t, n in warned
            if not any(e.path == n and e.start - 1 <= t <= e.end + MEMORY_S for e in eps)]
    return {"episodes": rows, "warnings": len(warned), "for_nothing": len(idle),
            "for_nothing_per_hour": len(idle) / (minutes / 60),
            "for_nothing_at": [f"t={t:.1f} s {n}" for t, n in idle],
            "warned_episodes": sum(1 for r in rows if r["warning_after_s"] is not None),
            "median_lead_s": statistics.median(leads) if leads else None,
            "median_lead_held_s": statistics.median(held_leads) if held_leads else None,
            "leads_s": leads, "leads_held_s": held_leads}


def warning_figures(t0: float, tl: Timeline, eps: list[Episode],
                    minutes: float) -> dict[str, Any]:
    """The shipped engine's own warnings (its snapshots' ``degrading``) judged."""
    onsets: list[tuple[float, str]] = []
    was: dict[str, bool] = {}
    scores: Scores = []
    for t, paths in tl.samples:
        scores.append((t - t0, {name: score for name, (score, _, _) in paths.items()}))
        for name, (_, _, deg) in paths.items():
            if deg is not None and not was.get(name):
                onsets.append((t - t0, name))
            was[name] = deg is not None
    seen_until = scores[-1][0] if scores else 0.0
    return judge_warnings([ep for ep in eps if ep.start <= seen_until], scores, onsets,
                          minutes, DecideConfig().dwell_s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--exit", choices=EXITS, default=SEPARATE,
                    help="each gateway its own exit (the default), or one shared exit, where "
                    "class default evades a silent path")
    args = ap.parse_args()
    with Run("bench_flaps", vars(args)) as run:
        with ThreadPoolExecutor(2) as pool:
            braid = pool.submit(run_engine, EngineConfig(), args.minutes, args.exit)
            base = pool.submit(run_engine, BASELINE, args.minutes, args.exit)
            (t0, tl), (b0, btl) = braid.result(), base.result()
        eps = episodes("cn-us", args.minutes * 60)
        for name, start, timeline in (("braid", t0, tl), ("baseline", b0, btl)):
            f = flap_figures(start, timeline, eps)
            run.figures[name] = f
            print(f"cn-us ({args.exit} exits), {args.minutes:g} min, {name}: {f['moves']} "
                  f"moves, {f['flaps']} flaps, {f['downs']} paths declared down; "
                  f"{f['evasions']} evasions, "
                  f"{f['evasions_for_nothing']} for nothing, default away "
                  f"{f['evasion_away_ms_median']} ms (median)")
            for line in f["list"]:  # type: ignore[attr-defined]
                print("  " + line)
            for line in f["down_list"]:  # type: ignore[attr-defined]
                print("  down: " + line)
            for line in f["evasions_for_nothing_at"]:  # type: ignore[attr-defined]
                print("  evasion for nothing: " + line)
        w = warning_figures(t0, tl, eps, args.minutes)
        run.figures["early_warning"] = w
        print(f"early warning: {w['warnings']} warnings, {w['for_nothing']} for nothing "
              f"({w['for_nothing_per_hour']:.1f}/h); median lead over the plain score: "
              f"{w['median_lead_s']} s")
        for r in w["episodes"]:
            print(f"  {r['path']:4} at {r['start_s']:5.0f} s {r['what']}: warning after "
                  f"{r['warning_after_s']}, score after {r['score_after_s']}")


if __name__ == "__main__":
    main()
