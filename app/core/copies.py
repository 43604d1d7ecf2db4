"""When realtime is copied onto a second path, and which (docs/multipath.md).

Pure, with explicit times like decide.py: ``CopyDecider.step`` takes realtime's path and
every candidate path as the deciders see them, and says whether copies are on and
through which path. The kernel does the copying (app/helper/copies.py on the client, the
exit role's table on the exit); this only chooses.

- **off** on a profile whose gateways each have their own exit: a copy through another
  gateway reaches the far end from another address, which a call's peer ignores, so it
  would cost bandwidth and save nothing;
- **always** (``settings.copies = "always"``): on whenever a second path is up;
- **auto**, the default: on at once when realtime's path shows trouble — its recent loss
  or jitter over a threshold, its score falling, the early warning, a suspect verdict —
  and for a while after any path failed (a second failure is likelier then); off only
  after every reason has been clear for ``hold_down_s``, so an on-off-on of a lossy path
  does not flap the copies.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from app.core.decide import Candidate
from app.core.liveness import Health

AUTO, ALWAYS, OFF = "auto", "always", "off"
MODES = (AUTO, ALWAYS, OFF)
# The copies move to a better path only when it scores this much higher than theirs.
MOVE_MARGIN = 0.1


@dataclass(frozen=True)
class CopyConfig:
    loss: float = 0.01  # realtime's path's loss (10 s window) at or over this: on
    recent_lost: int = 2  # probes lost in its recent window (2 s): a loss episode starting
    jitter_ms: float = 15.0  # its RFC 3550 jitter at or over this: on
    score: float = 0.5  # its score under this: on
    after_failure_s: float = 30.0  # on for this long after any path was declared down
    hold_down_s: float = 10.0  # every reason clear this long before copies go off
    # A path back from down carries no copies for this long (its first seconds up are
    # when it fails again); steering.py sets it to realtime's own hold-down (decide.py).
    path_hold_down_s: float = 15.0


@dataclass(frozen=True)
class CopyVerdict:
    on: bool
    paths: tuple[str, ...]  # where the copies go (never realtime's own path)
    reason: str  # why on, or why off: what the status and the tray say


class CopyDecider:
    def __init__(self, mode: str, shared_exit: bool, cfg: CopyConfig = CopyConfig()) -> None:
        if mode not in MODES:
            raise ValueError(f"copies mode {mode!r} is not one of {', '.join(MODES)}")
        self.mode = mode
        self.shared_exit = shared_exit
        self.cfg = cfg
        self.verdict = CopyVerdict(False, (), self._idle_reason())
        self._health: dict[str, Health] = {}
        self._back_at: dict[str, float] = {}  # when a path came back from down
        self._failed_at: float | None = None
        self._clear_since: float | None = None
        self._reason = ""  # the last trigger while on

    def _idle_reason(self) -> str:
        if not self.shared_exit:
            return ("off: the gateways have separate exits, so a copy would reach the "
                    "far end from another address")
        if self.mode == OFF:
            return "off (profile setting)"
        return "off: realtime's path is clean"

    def triggers(self, now: float, primary: Candidate) -> list[str]:
        """Why realtime's path needs copies now (empty: it does not)."""
        cfg, m = self.cfg, primary.metrics
        out = []
        if self._failed_at is not None and now - self._failed_at < cfg.after_failure_s:
            out.append(f"a path failed {now - self._failed_at:.0f} s ago")
        if primary.health is not Health.UP:
            out.append(f"{primary.name} is {primary.health.value}")
        if m.get("loss", 0.0) >= cfg.loss:
            out.append(f"{primary.name} loses {100 * m['loss']:.1f} %")
        if m.get("recent_lost", 0.0) >= cfg.recent_lost:
            out.append(f"{primary.name} lost {m['recent_lost']:.0f} recent probes")
        if m.get("jitter_ms", 0.0) >= cfg.jitter_ms:
            out.append(f"{primary.name} jitter {m['jitter_ms']:.0f} ms")
        if primary.score < cfg.score:
            out.append(f"{primary.name} scores {primary.score:.2f}")
        if primary.degrading:
            out.append(f"{primary.name} is degrading")
        return out

    def step(self, now: float, primary: str | None,
             cands: Sequence[Candidate]) -> CopyVerdict:
        for c in cands:
            before = self._health.get(c.name)
            if c.health is Health.DOWN and before not in (None, Health.DOWN):
                self._failed_at = now
            if c.health is not Health.DOWN and before is Health.DOWN:
                self._back_at[c.name] = now
            self._health[c.name] = c.health
        by_name = {c.name: c for c in cands}
        if not self.shared_exit or self.mode == OFF or primary not in by_name:
            self.verdict = CopyVerdict(False, (), self._idle_reason() if primary else
                                       "off: realtime has no path")
            return self.verdict
        reasons = ["always on (profile setting)"] if self.mode == ALWAYS else \
            self.triggers(now, by_name[primary])
        if reasons:
            self._clear_since = None
            self._reason = "; ".join(reasons)
        elif self.verdict.on:
            if self._clear_since is None:
                self._clear_since = now
            if now - self._clear_since < self.cfg.hold_down_s:
                reasons = [f"holding: clear for {now - self._clear_since:.0f} of "
                           f"{self.cfg.hold_down_s:.0f} s (was: {self._reason})"]
        if not reasons:
            self.verdict = CopyVerdict(False, (), self._idle_reason())
            return self.verdict
        second = self._second(now, primary, cands)
        if second is None:
            self.verdict = CopyVerdict(False, (), "off: no second path is healthy")
        else:
            self.verdict = CopyVerdict(True, (second,), "; ".join(reasons))
        return self.verdict

    def _eligible(self, now: float, c: Candidate) -> bool:
        """A path copies may be moved onto: up, scoring above 0 (a path scoring 0 loses
        past the score's limit: the lab's cn-us put copies on a 13 %-loss us that way),
        and not just back from down (in its hold-down)."""
        back = self._back_at.get(c.name)
        return c.health is Health.UP and c.score > 0 and (
            back is None or now - back >= self.cfg.path_hold_down_s)

    def _second(self, now: float, primary: str, cands: Sequence[Candidate]) -> str | None:
        """The copies' path: the best other eligible path by score; the one they use now
        is kept while it stays usable and scores above 0 (a suspect moment does not move
        them: it answers again or is declared down) unless an eligible one scores higher
        by more than ``MOVE_MARGIN`` (so two close scores do not swap it every tick)."""
        others = [c for c in cands if c.name != primary]
        best = max((c for c in others if self._eligible(now, c)),
                   key=lambda c: (c.score, c.raw), default=None)
        current = next((c for c in others if c.name in self.verdict.paths
                        and c.usable and c.score > 0), None)
        if current is not None and (best is None or current.health is Health.SUSPECT
                                    or best.score - current.score <= MOVE_MARGIN):
            return current.name
        return None if best is None else best.name
