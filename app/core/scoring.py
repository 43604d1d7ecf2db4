"""Path scores: one number in 0..1 per path, 0 = unusable.

    score = (w_lat * L + w_loss * P + w_cost * C + w_jit * J) / (w_lat + w_loss + w_cost + w_jit)

with each term normalised to 0..1, 1 = best:

- ``L = rtt_min / rtt``: the smoothed RTT against the fastest live path's (1 for the
  fastest, 0.5 for a path twice as slow). Relative, because what matters is which path
  is faster, not by how much a given link differs from an ideal one.
- ``P = 1 - loss / 5 %``, clamped: 1 without loss, 0 at 5 %.
- ``C = 1 / (1 + cost - cost_min)``: the gateway's cost from the profile against the
  cheapest gateway's (1 for the cheapest, 0.5 for one that costs one unit more).
- ``J = 1 / (1 + jitter / 20 ms)``: 1 without jitter, 0.5 at 20 ms (RFC 3550 jitter of
  the RTT). Its weight is 0 by default: shown, and usable by setting a weight.

A path that is down, or whose loss exceeds 5 %, gets score 0 (the seed's rule: "a path
whose loss exceeds 5 % gets weight 0"). So does a path in a **loss episode**: at least
4, and at least 10 %, of the probes of its recent window lost (``recent_lost`` of
``recent_size``, liveness.py: the last 2 s, at least 40 probes). On a standby (200 ms
probes) that is 4 of the last 40, as before; on a carried path (10 ms probes: 200 in
2 s) 20 of 200, which the 0.6 % round-trip loss of a good regional route never reaches
by chance, while cn-us's episode on tyo (28 % round trip) reaches it in well under a
second (the long window, 10 s, needs about 3 s to cross 5 %). A probe counts as lost
from its miss deadline (about one RTT), so a delay spike can look like loss for a
moment; the decider's dwell on a path that scores 0 (0.5 s) outlasts that.

A **saturated** path (paths.py: full of Braid's own traffic, at least 2 Mbit/s of it
while its RTT is 10 ms and 30 % over its base) loses probes to its own queue: that loss stays in
the loss term but does not zero the score, so the classes that mind the queue move away
by the margin and the dwell, and nobody's flows are flushed for it. The same formula
without the zero rules is kept as ``raw``, so that when every live path is over 5 % the
least bad one can still be ranked.
Default weights: latency 0.4, loss 0.3, cost 0.3, jitter 0 (the profile's ``Weights``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from app.core.profiles.model import Weights

LOSS_LIMIT = 0.05
RECENT_LOST_LIMIT = 4  # lost probes in the recent window: a loss episode ...
RECENT_LOST_SHARE = 0.10  # ... and at least this share of it
JITTER_REF_MS = 20.0


@dataclass(frozen=True)
class ScoreInput:
    name: str
    up: bool
    rtt_ms: float | None  # smoothed
    loss: float  # 0..1
    jitter_ms: float | None
    cost: float
    recent_lost: int = 0  # probes lost among the recent window (liveness.py)
    recent_size: int = 40
    saturated: bool = False  # full of Braid's own traffic (paths.py)


def episode_limit(recent_size: int) -> int:
    """Lost probes in a recent window of ``recent_size`` that make a loss episode."""
    return max(RECENT_LOST_LIMIT, math.ceil(RECENT_LOST_SHARE * recent_size))


def in_episode(p: ScoreInput) -> bool:
    return p.recent_lost >= episode_limit(p.recent_size)


@dataclass(frozen=True)
class Score:
    name: str
    score: float  # 0..1, 0 = unusable
    raw: float  # the same without the 5 % rule (0 only when down or unmeasured)
    latency: float
    loss: float
    cost: float
    jitter: float


def check_weights(w: Weights) -> None:
    values = (w.latency, w.loss, w.cost, w.jitter)
    if any(v < 0 for v in values) or sum(values) <= 0:
        raise ValueError(f"weights must be >= 0 and not all 0, got {values}")


def score_paths(paths: Sequence[ScoreInput], weights: Weights) -> dict[str, Score]:
    """Score every path against the others (latency and cost are relative)."""
    check_weights(weights)
    live = [p for p in paths if p.up and p.rtt_ms is not None]
    rtt_min = min((p.rtt_ms for p in live if p.rtt_ms is not None), default=None)
    cost_min = min((p.cost for p in paths), default=0.0)
    total = weights.latency + weights.loss + weights.cost + weights.jitter
    out: dict[str, Score] = {}
    for p in paths:
        if not p.up or p.rtt_ms is None or rtt_min is None:
            out[p.name] = Score(p.name, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
            continue
        lat = 1.0 if p.rtt_ms <= 0 else min(1.0, max(rtt_min, 1e-3) / p.rtt_ms)
        los = min(1.0, max(0.0, 1.0 - p.loss / LOSS_LIMIT))
        cst = 1.0 / (1.0 + max(0.0, p.cost - cost_min))
        jit = 1.0 / (1.0 + (p.jitter_ms or 0.0) / JITTER_REF_MS)
        raw = (weights.latency * lat + weights.loss * los + weights.cost * cst
               + weights.jitter * jit) / total
        lossy = p.loss > LOSS_LIMIT or in_episode(p)
        score = 0.0 if lossy and not p.saturated else raw
        out[p.name] = Score(p.name, score, raw, lat, los, cst, jit)
    return out
