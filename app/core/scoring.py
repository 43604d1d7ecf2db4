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
whose loss exceeds 5 % gets weight 0"). So does a path in a **loss episode**: 4 or more
of its last 40 probes lost (``recent_lost``, liveness.py; 2 s on the active path). The
long window (200 probes, 10 s on the active path) needs about 3 s of cn-us's episode on
tyo (15 % each way, 28 % round trip) to cross 5 % (11 losses, each known only at its
1 s hard timeout); 4 of 40 are missed after about 0.9 s of it. Why 4: on a path with the 0.6 %
round-trip loss of a good regional route, 4 losses within 40 probes happen by chance
about once in 90 minutes of active probing, 3 would happen once or twice in 10 minutes;
a path with 8 % loss is already at score 0 by the long window. A probe counts as lost
from its miss deadline (about one RTT), so a delay spike can look like loss for a
moment; the decider's dwell on a path that scores 0 (0.5 s) outlasts that. The same
formula without these rules is kept as ``raw``, so that when every live path is over
5 % the least bad one can still be ranked.
Default weights: latency 0.4, loss 0.3, cost 0.3, jitter 0 (the profile's ``Weights``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.core.profiles.model import Weights

LOSS_LIMIT = 0.05
RECENT_LOST_LIMIT = 4  # of the last 40 probes: a loss episode
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
        episode = p.recent_lost >= RECENT_LOST_LIMIT
        score = 0.0 if p.loss > LOSS_LIMIT or episode else raw
        out[p.name] = Score(p.name, score, raw, lat, los, cst, jit)
    return out
