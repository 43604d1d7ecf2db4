"""Which path each class rides, and what the helper must hold for that: the deciders
(decide.py), the scores (scoring.py), and the policy of whose running flows move.

Pure bookkeeping driven by the engine with explicit times: ``step`` turns the paths'
measurements into decisions, ``next_plan`` turns the decisions into the desired state to
send (or None when the helper already holds it), ``committed`` records that the helper
took it.

Whose flows move (the flush policy):
- a dead path's flows are flushed (re-classified onto their class's new path) as soon
  as some class has a path to go to; while every class is blocked they keep their dead
  mark and meet its unreachable rule, the safest place for them;
- a class that leaves a path because it scores 0 (lossy) takes that path's running
  flows with it: stickiness is for a path that is merely worse, not for one losing
  packets;
- on a shared-exit profile every move takes the running flows along: the far end sees
  one address whatever the path, so there is nothing to break by moving them;
- leaving the blocked state flushes the closed mark;
- bulk spreading (spread.py): re-weighting moves nothing (only new flows take the new
  weights); a dead spread path's flows go as above; one realtime took takes bulk's
  flows along on a shared exit. Not flushed: a spread path that scores 0 (bulk is TCP,
  whose congestion control copes with loss) and, on a shared exit, a path another class
  leaves voluntarily while bulk is spread over it (a flush is by path mark, so it would
  re-deal bulk's flows too). A flushed download whose client only receives lives on
  where its path does (nft.py's input chain takes its next segment and classifies the
  client's answers), not where it died: the exit keeps answering into the dead path
  (docs/multipath.md, "Still open");
- rebalancing (spread.py's Rebalancer, shared exit only): a spread path left with no
  running bulk flow takes one, by conntrack mark, from a path with two or more (one
  flow, not a flush: the others there keep running where they are).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from app.core.copies import CopyConfig, CopyDecider, CopyVerdict
from app.core.decide import Candidate, ClassDecider, ClassState, DecideConfig, Decision
from app.core.liveness import Health
from app.core.model import CLASSES
from app.core.paths import PathRuntime
from app.core.plan import build_state, dns_state, outside_dns, without_flush
from app.core.profiles.model import Weights
from app.core.scoring import ScoreInput, score_paths
from app.core.spread import Rebalancer, Spreader, SpreadVerdict
from app.wire.state import DesiredState, DnsState, GuardState

REALTIME, BULK, DEFAULT = "realtime", "bulk", "default"


@dataclass
class Pending:
    decision: Decision
    detection_s: float | None


@dataclass(frozen=True)
class Plan:
    """A desired state to send, and what it settles once the helper holds it."""

    state: DesiredState
    plain: DesiredState  # without its one-off flush list: what plans are compared by
    usable: frozenset[str]
    targets: dict[str, str | None]
    decided: frozenset[str]  # classes whose decision this state carries
    pending: tuple[Pending, ...]
    must_send: bool  # False: the helper holds this already; commit without sending
    flushed: frozenset[str] = frozenset()  # paths whose flows this state flushes
    copies: tuple[str, ...] = ()  # paths realtime is copied onto
    spread: tuple[str, ...] = ()  # bulk's slots, a path each (spread.py)
    moves: tuple[tuple[str, str], ...] = ()  # spread flows this state moves (from, to)


@dataclass
class _Held:
    state: DesiredState
    usable: frozenset[str]
    targets: dict[str, str | None] = field(default_factory=dict)
    copies: tuple[str, ...] = ()  # paths realtime is copied onto
    spread: tuple[str, ...] = ()  # bulk's slots


class Steering:
    def __init__(self, paths: Sequence[PathRuntime], classes: Sequence[str],
                 cfg: DecideConfig | Callable[[str], DecideConfig], weights: Weights,
                 now: float, *, shared_exit: bool = False, evade: bool = True,
                 persistent: bool = False,
                 copies: str | None = None, copy_cfg: CopyConfig | None = None,
                 spread: bool = False) -> None:
        self.paths = list(paths)
        self.weights = weights
        self.shared_exit = shared_exit
        self.persistent = persistent
        config = cfg if callable(cfg) else (lambda _c: cfg)
        if not any(p.spec.full for p in self.paths):
            classes = ()  # only split gateways: nothing to steer (plan.py)
        # In priority order (model.CLASSES): a class placed later may be kept off the
        # path of one placed earlier.
        order = sorted(classes, key=lambda c: CLASSES.index(c) if c in CLASSES else len(CLASSES))
        # Class default routes around a silent path on a shared exit (decide.py's
        # evasion): there a move breaks nothing. Realtime has copies for that (copies.py:
        # on as soon as its path is suspect), and bulk is spread.
        self.deciders = {c: ClassDecider(c, config(c), now,
                                         evade=evade and shared_exit and c == DEFAULT)
                         for c in order}
        self._pending: list[Pending] = []
        self._held: _Held | None = None
        self._unflushed: set[str] = set()  # dead paths whose flows are not yet flushed
        self._movers: set[str] = set()  # paths a class left whose flows go along (once)
        # The kill switch's destinations outside the tunnels (LAN, exclusions); None: no
        # kill switch at all (engine.py sets it from the profile and lan.py).
        self.guard_allow: tuple[str, ...] | None = None
        # dns() and guard() are asked at every evaluation (10 Hz) and parse every server
        # and network each time; their inputs are the paths' specs (fixed for this
        # Steering), default's tunnel and guard_allow: the last answer is kept.
        self._dns_memo: tuple[str | None, DnsState | None] | None = None
        self._guard_memo: tuple[tuple[tuple[str, ...], str | None], GuardState] | None = None
        self._scores_memo: tuple[tuple[Weights, tuple[ScoreInput, ...]],
                                 dict[str, tuple[float, float]]] | None = None
        # A default flow past this many MB becomes bulk (the helper counts it): the
        # profile's settings.bulk_after_mb, set by engine.py; None: never.
        self.bulk_after_mb: float | None = None
        self.settled: set[str] = set()  # classes whose first decision the kernel holds
        # Realtime copies (copies.py): the profile's settings.copies; None: the state
        # carries none at all (the engine before copies, and tests of other things).
        # A path back from down waits realtime's own hold-down before it carries copies.
        self.copier = None if copies is None or REALTIME not in self.deciders else \
            CopyDecider(copies, shared_exit, replace(
                copy_cfg or CopyConfig(), path_hold_down_s=config(REALTIME).hold_down_s))
        # Bulk spreading over every healthy path (spread.py); None: bulk rides one path.
        self.spreader = Spreader() if spread and BULK in self.deciders else None
        # Moving running spread flows onto idle paths (spread.py's rebalancing): only on
        # a shared exit, where a flow that changes path breaks nothing.
        self.rebalancer = Rebalancer() if self.spreader is not None and shared_exit else None
        self._moves: list[tuple[str, str]] = []  # not yet sent

    # -- measurements -> decisions --------------------------------------------------

    def scores(self) -> dict[str, tuple[float, float]]:
        """Asked several times a tick (the deciders, the backup, the snapshot) with the
        same inputs between two replies: the last answer is kept for equal inputs."""
        key = (self.weights, tuple(p.score_input() for p in self.paths))
        if self._scores_memo is None or self._scores_memo[0] != key:
            scored = score_paths(key[1], self.weights)
            self._scores_memo = (key, {n: (s.score, s.raw) for n, s in scored.items()})
        return dict(self._scores_memo[1])

    def candidates(self) -> list[Candidate]:
        """The paths a class may ride: the full gateways (a split one takes only its
        prefixes, by their own rules)."""
        scores = self.scores()
        return [
            Candidate(p.name, p.health(), scores[p.name][0], scores[p.name][1],
                      p.tracker.up_since, {**metrics(p), "score": scores[p.name][0]},
                      samples=p.stats.samples, degrading=p.degrading,
                      silent=p.tracker.silent)
            for p in self.paths if p.spec.full
        ]

    def step(self, now: float) -> list[Decision]:
        """Step every class's decider, most important first; the decisions wait for the
        next plan. Bulk is kept off realtime's path while another path is up: it scores
        0 there for bulk, so bulk leaves it (or never takes it) unless it is the only one."""
        cands = self.candidates()
        by_name = {p.name: p for p in self.paths}
        out = []
        for decider in self.deciders.values():
            reserved = self._reserved_for(decider.cls)
            view = cands
            if reserved is not None and any(c.name != reserved and c.health is Health.UP
                                            for c in cands):
                view = [replace(c, score=0.0, raw=0.0) if c.name == reserved else c
                        for c in cands]
            decision = decider.step(now, view)
            if decision is None:
                continue
            if reserved is not None and decision.from_path == reserved and \
                    decision.kind == "switch":
                decision = replace(decision, reason=f"kept off {REALTIME}'s path "
                                   f"{reserved}; {decision.to_path} is the best other path")
            detection = None
            if decision.kind in ("failover", "fail_closed") and decision.from_path:
                detection = by_name[decision.from_path].last_detection_s
            spreading = decider.cls == BULK and self.spread_verdict is not None
            # A flush is by path mark: it would also re-deal the bulk flows spread onto
            # the path a class leaves (docs/multipath.md, "Bulk spreading"). So
            # on a shared exit a voluntary move off a spread path leaves the running
            # flows where they are, as on separate exits; a lossy path's still go.
            spread_here = decision.from_path in self.spread_paths()
            # An evasion and its return take default's flows along even off a spread path
            # (bulk's there are re-dealt: rare, and harmless on a shared exit): the flows
            # must leave a silent path, and come back with their class, or a flow started
            # during the 50 ms away would stay on a path default left.
            if decision.from_path and decision.to_path and not spreading and (
                    decision.kind in ("evade", "return") or
                    (self.shared_exit and not spread_here) or (
                        decision.kind == "switch"
                        and decision.metrics.get("from_score") == 0.0)):
                self._movers.add(decision.from_path)
            self._pending.append(Pending(decision, detection))
            out.append(decision)
        if self.copier is not None:
            self.copier.step(now, self.deciders[REALTIME].current, cands)
        if self.spreader is not None:
            self._spread(now, cands, by_name)
        return out

    def _spread(self, now: float, cands: list[Candidate],
                by_name: dict[str, PathRuntime]) -> None:
        """Step the spreader; a path bulk's flows must leave (realtime took it, on a
        shared exit) is flushed once, like a class's move."""
        assert self.spreader is not None
        for p in self.paths:
            self.spreader.measure(now, p.name, max(p.link.rx_bps, p.link.tx_bps), p.saturated)
        bulk = self.deciders[BULK].current
        before = set(self.spread_paths()) or ({bulk} if bulk else set())
        reserved = self._reserved_for(BULK)
        verdict = self.spreader.step(now, cands, reserved)
        after = set(verdict.paths) if verdict is not None else ({bulk} if bulk else set())
        for name in before - after:
            if by_name[name].usable and self.shared_exit and name == reserved:
                self._movers.add(name)

    def take_spread_flows(self, now: float, flows: Mapping[str, int]) -> list[tuple[str, str]]:
        """The helper's count of established spread flows per path (each status read):
        the moves it calls for are sent with the next plan, and returned."""
        if self.rebalancer is None:
            return []
        held = self.held_spread()
        # Against what the kernel holds: a move names two paths of the held spread.
        verdict = self.spread_verdict
        if verdict is None or set(verdict.paths) != set(held):
            return []
        assert self.spreader is not None
        caps = {n: c.bps(now) for n, c in self.spreader.capacity.items()}
        moves = self.rebalancer.step(flows, verdict, caps)
        self._moves += moves
        return moves

    @property
    def spread_verdict(self) -> SpreadVerdict | None:
        return None if self.spreader is None else self.spreader.verdict

    def spread_paths(self) -> tuple[str, ...]:
        """The paths new bulk flows are spread over now (most slots first), () : none."""
        v = self.spread_verdict
        return () if v is None else v.paths

    def spread_slots(self) -> tuple[str, ...]:
        v = self.spread_verdict
        if v is None:
            return ()
        usable = self.usable()
        slots = tuple(n for n in v.slots if n in usable)
        return slots if len(set(slots)) >= 2 else ()

    def held_spread(self) -> tuple[str, ...]:
        """The paths the kernel spreads new bulk flows over now (most slots first)."""
        if self._held is None:
            return ()
        slots = self._held.spread
        return tuple(sorted(set(slots), key=lambda n: (-slots.count(n), n)))

    @property
    def copy_verdict(self) -> CopyVerdict | None:
        return None if self.copier is None else self.copier.verdict

    def copy_paths(self) -> tuple[str, ...]:
        """Where realtime is copied to now: the verdict's paths that can carry it."""
        v = self.copy_verdict
        if v is None or not v.on:
            return ()
        usable = self.usable()
        return tuple(p for p in v.paths if p in usable)

    def held_copies(self) -> tuple[str, ...]:
        """The paths the kernel copies realtime onto now."""
        return () if self._held is None else self._held.copies

    def _reserved_for(self, cls: str) -> str | None:
        """The path ``cls`` must stay off while another is up: realtime's, for bulk
        (bulk never queues the realtime class)."""
        if cls != BULK:
            return None
        rt = self.deciders.get(REALTIME)
        return rt.current if rt is not None else None

    # -- decisions -> desired state -------------------------------------------------

    def usable(self) -> frozenset[str]:
        return frozenset(p.name for p in self.paths if p.usable)

    def targets(self) -> dict[str, str | None]:
        return {c: d.current for c, d in self.deciders.items()}

    def carried(self) -> set[str]:
        return {d.current for d in self.deciders.values() if d.current is not None}

    @property
    def warming(self) -> bool:
        return any(d.state is ClassState.WAITING for d in self.deciders.values())

    @property
    def all_settled(self) -> bool:
        return self.settled == set(self.deciders)

    def held_targets(self) -> dict[str, str | None]:
        """What the kernel holds now: a class "is on" a path once the rules are in."""
        if self._held is None:
            return {c: None for c in self.deciders}
        return dict(self._held.targets)

    def _via(self) -> str | None:
        """Default's tunnel (or any usable full one): where a new flow's first route
        lookup lands before nft marks it, and where resolved has the DNS."""
        by_name = {p.name: p for p in self.paths}
        usable = self.usable()
        via_path = self.targets().get("default") or next(
            (p.name for p in self.paths if p.name in usable and p.spec.full), None)
        return by_name[via_path].spec.interface if via_path in by_name else None

    def guard(self) -> GuardState | None:
        """The kill switch for the plan (via: :meth:`_via`); it lets no DNS server out
        beside the tunnels."""
        if self.guard_allow is None:
            return None
        key = (self.guard_allow, self._via())
        if self._guard_memo is None or self._guard_memo[0] != key:
            self._guard_memo = (key, outside_dns(GuardState(*key), self.dns()))
        return self._guard_memo[1]

    def dns(self) -> DnsState | None:
        """The gateways' DNS (plan.dns_state), on default's tunnel; with no usable path,
        on the first full one (its servers are unreachable then, and nobody else's are
        asked: fail closed)."""
        via = self._via() or next((p.spec.interface for p in self.paths if p.spec.full), None)
        if self._dns_memo is None or self._dns_memo[0] != via:
            self._dns_memo = (via, dns_state([p.spec for p in self.paths], via))
        return self._dns_memo[1]

    def held_dns(self) -> DnsState | None:
        """The DNS of the state the helper last took (None: none, or nothing sent yet)."""
        return None if self._held is None else self._held.state.dns

    def dirty(self) -> bool:
        if self._held is None:
            return True
        return bool(self._moves) or (self.usable(), self.targets(), self.guard(), self.dns(),
                                     self.copy_paths(), self.spread_slots()) != (
            self._held.usable, self._held.targets, self._held.state.guard,
            self._held.state.dns, self._held.copies, self._held.spread)

    def forget_held(self) -> None:
        """The helper lost what it held (it restarted): send the whole state again."""
        self._held = None

    def next_plan(self) -> Plan:
        paths = self.paths
        usable, targets = self.usable(), self.targets()
        decided = frozenset(c for c, d in self.deciders.items()
                            if d.state is not ClassState.WAITING)
        prev = self._held
        unflushed = set(self._unflushed)
        if prev is not None:
            unflushed |= prev.usable - usable
        unflushed -= usable
        flush: set[str] = set()
        somewhere = any(t is not None for t in targets.values())
        if somewhere:
            # A path another class still rides is flushed too: its flows are classified
            # afresh onto their own class's path, which for that class is the same one.
            flush = unflushed | self._movers
        left_closed = any(t is not None and (prev is None or prev.targets.get(c) is None)
                          for c, t in targets.items())
        copies = self.copy_paths()
        by_name = {p.name: p for p in paths}
        state = build_state([p.spec for p in paths], targets, usable, flush=flush,
                            flush_closed=left_closed, persistent=self.persistent,
                            shared_exit=self.shared_exit, guard=self.guard(),
                            dns=self.dns(), bulk_after_mb=self.bulk_after_mb,
                            copies=None if self.copier is None or not self.shared_exit else
                            tuple(by_name[n].spec.interface for n in copies),
                            spread=self.spread_slots(), moves=self._moves, mptcp=usable)
        plain = without_flush(state)
        moves = tuple(self._moves)
        must_send = prev is None or plain != prev.state or bool(flush) or left_closed or \
            bool(moves)
        return Plan(state, plain, usable, targets, decided, tuple(self._pending), must_send,
                    frozenset(flush), copies, self.spread_slots(), moves)

    def committed(self, plan: Plan) -> None:
        """The helper holds ``plan`` (or already did). Only what the plan carried is
        settled: decisions made while it was on its way wait for the next one."""
        prev = self._held
        if prev is not None:
            self._unflushed |= prev.usable - plan.usable
        self._unflushed -= plan.usable | plan.flushed
        self._movers -= plan.flushed
        for move in plan.moves:
            self._moves.remove(move)
        self._held = _Held(plan.plain, plan.usable, plan.targets, plan.copies, plan.spread)
        self.settled |= plan.decided
        done = {id(p) for p in plan.pending}
        self._pending = [p for p in self._pending if id(p) not in done]

    # -- what the user sees ---------------------------------------------------------

    def degraded(self) -> bool:
        scores = self.scores()
        blocked = any(d.current is None for d in self.deciders.values())
        lost = any(p.health() is Health.DOWN for p in self.paths)
        poor = any(d.current is not None and scores[d.current][0] == 0
                   for d in self.deciders.values())
        return blocked or lost or poor


def metrics(path: PathRuntime) -> dict[str, float]:
    m = path.stats.metrics()
    out = {"loss": m.loss, "recent_lost": float(path.tracker.recent_lost)}
    for key, value in (("rtt_ms", m.rtt_smoothed_ms), ("jitter_ms", m.jitter_ms),
                       ("rtt_p95_ms", m.rtt_p95_ms)):
        if value is not None:
            out[key] = round(value, 3)
    return out
