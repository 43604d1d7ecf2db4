"""Which path carries a traffic class: one small state machine per class.

States:
- ``WAITING``: just connected; waits until every path has a verdict (``min_samples``
  probe outcomes, or declared down) or ``warmup_s`` has passed, then takes the best
  usable path (a single lucky probe must not pick a lossy path).
- ``ACTIVE(path)``: the class rides ``path``.
  - **failover**: the path is declared DOWN -> move at once to the best usable path
    (UP before SUSPECT), or fail closed if there is none.
  - **voluntary switch** (hysteresis + hold-down): a challenger moves the class only
    when its score beats the current path's by ``margin`` continuously for
    ``dwell_s``, the last switch was at least ``hold_down_s`` ago, and the challenger
    itself has been UP (not suspect, not just back from down) for ``hold_down_s``.
    A suspect current path is not left early: it either answers again or is declared
    down (a bounded wait, see liveness.py). When the current path scores 0 (its loss
    is over 5 %, or it is in a loss episode: scoring.py) the dwell is ``unusable_dwell_s``
    (0.5 s) instead: it is already unusable, so a usable challenger need not prove
    itself for long (the hold-down still applies); when it is degrading (the early
    warning, detect.py) it is ``degrading_dwell_s`` (1 s).
- ``FAIL_CLOSED``: no usable path; the class's traffic hits the unreachable rule.
  Leaves by itself as soon as a path is UP again ("restored").

**Evasion** (``evade``: the engine allows it for class default on a shared exit, where a
move breaks nothing): a current path that is *silent* (liveness.py: quiet past its
silent limit, 60 ms before a verdict could come) is left at once for the best UP path
that is not ("evade"); the decider remembers where it came from, and
- the path answers again (a delay step, not an outage): the class goes back at once
  ("return"), and the hold-down and dwell clocks are as they were: the excursion was no
  decision, so whether the path's new score should move the class is the voluntary
  rules' business, with their margin and dwell;
- the path is declared down: the failover is where the class already is ("failover",
  to the same path; the user's event);
- while away, nothing voluntary happens, and the path it is on failing is a failover.
Why: the verdict waits out a 50 ms delay step (a path that got slower and a dead one
look the same until then), and that wait is most of a switchover; routing around the
silence costs a class on a shared exit two moves when the path only got slower, and
saves it 60 ms of its gap when the path died. Bound on the gap's start: the silent
limit, ``f + d + I + max(10 ms, late)``.

Why this never flaps on a noisy path: a path with loss above 5 % scores 0, and a
short good spell cannot move traffic (``dwell_s``); after any move, nothing voluntary
happens for ``hold_down_s``. So voluntary switches are at most one per
``max(dwell_s, hold_down_s)`` even with adversarial scores.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from app.core.liveness import Health


class ClassState(enum.Enum):
    WAITING = "waiting"
    ACTIVE = "active"
    FAIL_CLOSED = "fail_closed"


@dataclass(frozen=True)
class DecideConfig:
    margin: float = 0.10  # score points (0..1) a challenger must lead by
    dwell_s: float = 5.0  # ... continuously, for this long
    unusable_dwell_s: float = 0.5  # the dwell when the current path scores 0 (lossy)
    degrading_dwell_s: float = 1.0  # the dwell when the current path is degrading
    hold_down_s: float = 15.0  # quiet time after a switch, and up-time before a path is eligible
    warmup_s: float = 2.0  # longest wait for first measurements after connecting
    min_samples: int = 10  # probe outcomes per path that end the warm-up early

    def __post_init__(self) -> None:
        if not 0 <= self.margin <= 1:
            raise ValueError(f"margin must be within 0..1, got {self.margin}")
        if min(self.dwell_s, self.unusable_dwell_s, self.degrading_dwell_s, self.hold_down_s,
               self.warmup_s) < 0:
            raise ValueError("dwell, hold-down and warm-up must be >= 0")


@dataclass(frozen=True)
class Candidate:
    """One path as the decider sees it."""

    name: str
    health: Health
    score: float
    raw: float
    up_since: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    samples: int = 0  # probe outcomes in the path's loss window
    degrading: bool = False  # the early warning (detect.py): RTT or loss rising
    silent: bool = False  # suspect on evidence of silence (liveness.py)

    @property
    def usable(self) -> bool:
        return self.health in (Health.UP, Health.SUSPECT)


@dataclass(frozen=True)
class Decision:
    cls: str
    # "select" | "switch" | "failover" | "fail_closed" | "restored" | "evade" | "return"
    kind: str
    from_path: str | None
    to_path: str | None
    reason: str
    metrics: dict[str, float]
    t: float


def _score_words(c: Candidate) -> str:
    """The score, and why it is 0 when it is (a restored path often is, for a moment)."""
    if c.score > 0:
        return f" (score {c.score:.2f})"
    lost = int(c.metrics.get("recent_lost", 0))
    if lost:
        return (f" (scores 0 for now: {lost} of its last probes were lost while it went "
                "down; that clears as new probes are answered)")
    loss = c.metrics.get("loss", 0.0)
    if loss:
        return f" (scores 0 for now: loss {loss * 100:.1f} % over its window)"
    return " (not scored yet: too few answers)"


def _rank(c: Candidate) -> tuple[bool, float, float]:
    return (c.health is Health.UP, c.score, c.raw)


def best_of(cands: Sequence[Candidate]) -> Candidate | None:
    usable = [c for c in cands if c.usable]
    return max(usable, key=_rank) if usable else None


class ClassDecider:
    """The decision state machine of one traffic class."""

    def __init__(self, cls: str, cfg: DecideConfig, started: float, *,
                 evade: bool = False) -> None:
        self.cls = cls
        self.cfg = cfg
        self.evade = evade
        # Evading: the silent path the class left, and its clocks as they were then.
        self.evaded_from: str | None = None
        self._before_evasion: float | None = None
        self.state = ClassState.WAITING
        self.current: str | None = None
        self.started = started
        self.last_switch: float | None = None
        self.challenger: str | None = None
        self.challenger_since: float | None = None

    def step(self, now: float, cands: Sequence[Candidate]) -> Decision | None:
        """Feed the paths as they are now; returns a decision when the target changes."""
        by_name = {c.name: c for c in cands}
        if self.state is ClassState.WAITING:
            return self._step_waiting(now, cands)
        if self.state is ClassState.FAIL_CLOSED:
            best = best_of([c for c in cands if c.health is Health.UP])
            if best is None:
                return None
            return self._move(now, "restored", best, None,
                              f"{best.name} answers again{_score_words(best)}")
        cur = by_name.get(self.current or "")
        if self.evaded_from is not None and cur is not None and cur.health is not Health.DOWN:
            return self._step_evading(now, cur, by_name.get(self.evaded_from))
        self.evaded_from = None
        if cur is None or cur.health is Health.DOWN:
            others = [c for c in cands if c.name != self.current]
            best = best_of(others)
            why = f"{self.current} declared down"
            if best is None:
                return self._fail_closed(now, f"{why}; no other path is up", cur)
            return self._move(now, "failover", best, cur, f"{why}; {best.name} is the best "
                              f"path left (score {best.score:.2f})")
        if self.evade and cur.silent:
            away = best_of([c for c in cands if c.name != cur.name and
                            c.health is Health.UP and not c.silent])
            if away is not None:
                before = self.last_switch
                decision = self._move(now, "evade", away, cur,
                                      f"{cur.name} went silent; on {away.name} until it "
                                      f"answers or is declared down (score {away.score:.2f})")
                self.evaded_from, self._before_evasion = cur.name, before
                return decision
        return self._step_voluntary(now, cur, cands)

    def _step_evading(self, now: float, cur: Candidate,
                      home: Candidate | None) -> Decision | None:
        """Away from the silent path ``home`` (its evasion): back when it answers, a
        failover in place when it is declared down."""
        if home is None or home.health is Health.DOWN:
            # The decision is the failover from the dead path, to where the class is.
            self.current, self.evaded_from = self.evaded_from, None
            return self._move(now, "failover", cur, home,
                              f"{self.current} declared down; {cur.name}, where it went "
                              f"when {self.current} fell silent, is the path (score "
                              f"{cur.score:.2f})")
        if home.health is not Health.UP:
            return None
        self.evaded_from = None
        decision = self._move(now, "return", home, cur,
                              f"{home.name} answers again: back from {cur.name}")
        self.last_switch = self._before_evasion
        return decision

    def _step_waiting(self, now: float, cands: Sequence[Candidate]) -> Decision | None:
        all_known = all(c.health is Health.DOWN or (
            c.health is not Health.UNKNOWN and c.samples >= self.cfg.min_samples)
            for c in cands)
        if not all_known and now - self.started < self.cfg.warmup_s:
            return None
        best = best_of(cands)
        if best is None:
            if all_known or now - self.started >= self.cfg.warmup_s:
                return self._fail_closed(now, "no path answered after connecting", None)
            return None
        return self._move(now, "select", best, None,
                          f"best path after connecting (score {best.score:.2f})")

    def _step_voluntary(
        self, now: float, cur: Candidate, cands: Sequence[Candidate]
    ) -> Decision | None:
        eligible = [
            c for c in cands
            if c.name != cur.name and c.health is Health.UP and c.up_since is not None
            and now - c.up_since >= self.cfg.hold_down_s
            and c.score >= cur.score + self.cfg.margin
        ]
        best = max(eligible, key=_rank) if eligible else None
        if best is None:
            self.challenger = self.challenger_since = None
            return None
        if best.name != self.challenger:
            self.challenger, self.challenger_since = best.name, now
        assert self.challenger_since is not None
        held = now - self.challenger_since
        quiet = self.last_switch is None or now - self.last_switch >= self.cfg.hold_down_s
        dwell = self.cfg.unusable_dwell_s if cur.score <= 0 else (
            self.cfg.degrading_dwell_s if cur.degrading else self.cfg.dwell_s)
        if held < dwell or not quiet:
            return None
        return self._move(
            now, "switch", best, cur,
            f"{best.name} scored {best.score:.2f} vs {cur.score:.2f} on {cur.name} "
            f"(margin {self.cfg.margin:.2f}) for {held:.1f} s",
        )

    def _move(
        self, now: float, kind: str, to: Candidate, frm: Candidate | None, reason: str
    ) -> Decision:
        metrics = {f"to_{k}": v for k, v in to.metrics.items()}
        metrics["to_score"] = to.score
        if frm is not None:
            metrics.update({f"from_{k}": v for k, v in frm.metrics.items()})
            metrics["from_score"] = frm.score
        decision = Decision(self.cls, kind, self.current, to.name, reason, metrics, now)
        self.state = ClassState.ACTIVE
        self.current = to.name
        self.last_switch = now
        self.challenger = self.challenger_since = None
        return decision

    def _fail_closed(self, now: float, reason: str, frm: Candidate | None) -> Decision:
        metrics = {} if frm is None else {f"from_{k}": v for k, v in frm.metrics.items()}
        decision = Decision(self.cls, "fail_closed", self.current, None, reason, metrics, now)
        self.state = ClassState.FAIL_CLOSED
        self.current = None
        self.challenger = self.challenger_since = None
        return decision
