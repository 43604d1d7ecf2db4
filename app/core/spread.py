"""Bulk spreading (docs/multipath.md, "Bulk spreading"): which paths new bulk flows are
dealt onto, and in what proportion. Pure, with time injected (like decide.py): the
engine steps a :class:`Spreader` with the candidates and its clock; the helper turns the
result (a list of slots, each a path) into an nft ``numgen inc`` map in the bulk class's
marking chain, so each *new* bulk flow takes the next slot and keeps its path in its
conntrack mark for its whole life.

Weights. A path's weight is ``score × capacity`` when every spread path's capacity is
known, else ``score``:
- the aim is that every bulk flow gets about the same rate wherever it lands: N
  long-lived TCP flows sharing a path of capacity C each get about C/N, so flows dealt
  in proportion to capacity see equal rates, and the aggregate approaches the sum of
  the capacities (a path given too few flows idles, one given too many queues);
- the score (0..1, scoring.py) discounts a path for its RTT, loss and cost: a flow on a
  slower round trip grows its window more slowly, so a slower path gets fewer flows;
- capacity is *measured*, never configured: the rate a path carried while it was
  saturated (queueing Braid's own traffic, paths.py), the median of such readings in
  the last ``CAPACITY_WINDOW_S`` (not the highest: the tunnel's counters are read at
  the sender's side, where an upload's slow start bursts above what the path drains;
  in the lab the highest reading ranked a 20 Mbit/s path under another one). Until
  every path has been saturated once the units of the paths' weights would differ
  (bits per second for some, nothing for others), so the score alone decides; that is
  the state of paths nobody has filled yet, where the proportion matters little
  (nothing is queueing).
Bound: a path's weight is at most its capacity share (score ≤ 1), at least one slot of
``SLOTS`` (a healthy path is never starved, so its capacity can be measured); quantised
by largest remainder, each path's share is within 1/SLOTS of its weight's share.

Re-weighting. Existing flows never move when weights change: the weights only say where
the *next* new flow goes (its mark is set once, in conntrack). New weights are taken
only when some path's share moves by ``REWEIGHT_SHARE`` or more, at most once per
``REWEIGHT_S``, so a score's wiggles do not reload the chain; a change of *which* paths
spread (one died, came back, was taken by realtime) is taken at once.

Rebalancing (:class:`Rebalancer`, shared exit only). Dealing decides a flow's path once,
so a batch of like transfers ends when the path given the most work per bit/s does:
six equal flows dealt 2/2/2 over 20/20/10 Mbit/s leave the thin path holding a third of
the bytes (at best 60 % of the rates). On a shared exit a running flow can change path
without breaking (the far end sees the exit's one address; the exit answers through the
gateway the flow's last packet came from), so a spread path left with no running bulk
flow takes one: from the path with the most flows per weight when it has two or more;
else a path's lone flow when the idle path's measured capacity is ``REBALANCE_FASTER``
times its own or more (it gets faster; the asymmetry means it never moves back; by the
capacities as measured now, not the weights of the last re-weighting, which until every
path has been full are scores). A path takes
one at the first status read that finds it idle (the helper counts established spread
flows once a second): waiting for a second read, to leave a batch still being dealt
alone, cost the 6-flow batch up to a second of an idle path (docs/multipath.md,
"Rebalancing", has both runs' figures), while a batch is dealt within
milliseconds, so a read in the middle of one is rare and costs one needless move.
Bound: at most one flow onto each idle path per status read, and a flow moves only onto
an idle path, so the flows still sharing a busy path never move.

Which paths: those usable (up, or suspect but not declared down) and scoring above 0,
minus the path of the realtime class while another qualifies (bulk never queues
realtime). Fewer than two: no spread, bulk rides its decider's one path as before.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from app.core.decide import Candidate

SLOTS = 20  # the map's length: 5 % steps, small enough to list and to audit
REWEIGHT_SHARE = 0.10  # a share must move this much (of all flows) to re-weight
REWEIGHT_S = 5.0  # at most one re-weighting (of the same paths) per this long
CAPACITY_WINDOW_S = 60.0  # a saturated rate this old no longer says what a path carries
CAPACITY_SAMPLES = 256  # readings kept: a minute of a few steps a second
REBALANCE_FASTER = 1.5  # a lone flow moves onto an idle path this much heavier, or more


@dataclass
class Capacity:
    """A path's measured capacity: the median rate it carried while saturated, within
    the last ``CAPACITY_WINDOW_S`` (the latest ``CAPACITY_SAMPLES`` such readings)."""

    samples: list[tuple[float, float]] = field(default_factory=list)  # (time, bps)

    def update(self, now: float, bps: float, saturated: bool) -> None:
        self.samples = [s for s in self.samples if now - s[0] <= CAPACITY_WINDOW_S]
        if saturated and bps > 0:
            self.samples = [*self.samples, (now, bps)][-CAPACITY_SAMPLES:]

    def bps(self, now: float) -> float | None:
        live = [b for t, b in self.samples if now - t <= CAPACITY_WINDOW_S]
        return statistics.median(live) if live else None


def weights(cands: Sequence[Candidate], capacity: Mapping[str, float | None]
            ) -> dict[str, float]:
    """Each candidate's weight: score × capacity if every candidate's is known, else the
    score (module docstring)."""
    caps = [capacity.get(c.name) for c in cands]
    if cands and all(cap is not None and cap > 0 for cap in caps):
        top = max(cap for cap in caps if cap is not None)
        return {c.name: c.score * (capacity[c.name] or 0.0) / top for c in cands}
    return {c.name: c.score for c in cands}


def shares(weight: Mapping[str, float], slots: int = SLOTS) -> dict[str, int]:
    """Slots per path by largest remainder, each path at least one (names sorted for a
    deterministic result)."""
    names = sorted(weight)
    if not names:
        return {}
    total = sum(max(0.0, weight[n]) for n in names)
    ideal = {n: (max(0.0, weight[n]) / total if total > 0 else 1 / len(names))
             * (slots - len(names)) for n in names}
    # One slot each first, the rest by weight.
    out = {n: 1 + int(ideal[n]) for n in names}
    rest = slots - sum(out.values())
    for n in sorted(names, key=lambda n: (-(ideal[n] - int(ideal[n])), n))[:rest]:
        out[n] += 1
    return out


def interleave(share: Mapping[str, int]) -> tuple[str, ...]:
    """The slots in smooth weighted round-robin order (nginx's): consecutive new flows
    take different paths, so even a handful of flows lands close to the weights (the
    first 5 flows of 2:2:1 are a, b, c, a, b, not a, a, b, b, c)."""
    total = sum(share.values())
    current = dict.fromkeys(share, 0)
    out = []
    for _ in range(total):
        for n in share:
            current[n] += share[n]
        best = max(sorted(share), key=lambda n: current[n])
        current[best] -= total
        out.append(best)
    return tuple(out)


@dataclass(frozen=True)
class SpreadVerdict:
    paths: tuple[str, ...]  # the spread paths, most slots first
    slots: tuple[str, ...]  # path per slot, in the order new flows take them
    weights: dict[str, float]
    capacity_known: bool
    since: float


class Spreader:
    """Holds the spread and changes it only as the module docstring says."""

    def __init__(self) -> None:
        self.verdict: SpreadVerdict | None = None  # None: no spread (fewer than 2 paths)
        self.capacity: dict[str, Capacity] = {}

    def measure(self, now: float, name: str, bps: float, saturated: bool) -> None:
        self.capacity.setdefault(name, Capacity()).update(now, bps, saturated)

    def eligible(self, cands: Sequence[Candidate], reserved: str | None) -> list[Candidate]:
        # Suspect (a missed probe, not declared down) stays in: a blip must not reshuffle
        # the spread; a path declared down leaves at once, its flows flushed.
        ok = [c for c in cands if c.usable and c.score > 0]
        if reserved is not None and any(c.name != reserved for c in ok):
            ok = [c for c in ok if c.name != reserved]
        return ok

    def step(self, now: float, cands: Sequence[Candidate], reserved: str | None
             ) -> SpreadVerdict | None:
        """The spread for new bulk flows now; ``reserved``: realtime's path."""
        ok = self.eligible(cands, reserved)
        if len(ok) < 2:
            self.verdict = None
            return None
        caps = {c.name: self.capacity[c.name].bps(now) if c.name in self.capacity else None
                for c in ok}
        w = weights(ok, caps)
        share = shares(w)
        old = self.verdict
        if old is not None and set(old.paths) == set(share):
            before = {n: old.slots.count(n) / len(old.slots) for n in old.paths}
            moved = max(abs(share[n] / SLOTS - before[n]) for n in share)
            if moved < REWEIGHT_SHARE - 1e-9 or now - old.since < REWEIGHT_S:
                return old
        order = tuple(sorted(share, key=lambda n: (-share[n], n)))
        self.verdict = SpreadVerdict(order, interleave({n: share[n] for n in order}), w,
                                     all(v is not None for v in caps.values()), now)
        return self.verdict


class Rebalancer:
    """Which running spread flows move, from the helper's counts (module docstring)."""

    def __init__(self) -> None:
        self.moved = 0

    def step(self, flows: Mapping[str, int], verdict: SpreadVerdict | None,
             capacity: Mapping[str, float | None] | None = None) -> list[tuple[str, str]]:
        """``flows``: established spread flows per path at this status read;
        ``capacity``: each path's measured capacity now (None: not known). The moves to
        make now, (from, to) each."""
        cap = capacity or {}
        if verdict is None:
            return []
        counts = {n: flows.get(n, 0) for n in verdict.paths}
        idle = [n for n, k in counts.items() if k == 0]
        w = {n: max(verdict.weights.get(n, 0.0), 1e-9) for n in verdict.paths}
        moves = []
        for dst in sorted(idle, key=lambda n: (-w[n], n)):
            busy = [n for n in verdict.paths if counts[n] >= 2]
            fast = cap.get(dst)
            lone = [n for n in verdict.paths if counts[n] == 1 and fast is not None
                    and (slow := cap.get(n)) is not None and fast >= REBALANCE_FASTER * slow]
            if busy:
                src = max(busy, key=lambda n: (counts[n] / w[n], n))
            elif lone:
                src = min(lone, key=lambda n: (cap.get(n) or 0.0, n))
            else:
                continue
            counts[src] -= 1
            counts[dst] += 1
            moves.append((src, dst))
        self.moved += len(moves)
        return moves
