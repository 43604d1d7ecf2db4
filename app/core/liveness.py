"""Is a path alive? Outstanding probes, their deadlines, and the path's health state.

Pure logic driven by the prober with explicit times (seconds, monotonic), so the
detection rules are unit tested without a network.

A probe sent at ``t`` is **missed** when no reply has come by ``t + srtt + margin``,
where ``margin = max(min_margin, 4 * rttvar)`` (RFC 6298's RTO shape) — before the
first reply the deadline is ``initial_timeout``. It is **lost** (for the loss window)
when no reply has come by its hard timeout, ``max(hard_timeout_floor, 3 * srtt)``; a
reply between the two counts as an answer but does not undo the miss. Probes lost
while the path is declared DOWN do not count as loss: an outage is the DOWN state (and
the hold-down after it), not a loss rate that would keep a recovered path scored 0
until its window forgets the outage.

Health:
- ``UNKNOWN`` until the first reply; then ``UP``. A path that has never answered is not
  declared down before ``connect_timeout_s`` (8 s) after its first probe: its tunnel's
  first handshake takes a round trip before any probe can, so a 280 ms path answers its
  first probe only after about a second, and when that handshake is lost (8 % of the
  time on a path with 8 % loss) WireGuard retries only after REKEY_TIMEOUT (5 s, plus
  up to 1/3 s of jitter), then needs two more round trips of a slow path with full
  queues. Probes sent before the first reply are neither loss nor RTT samples (they
  waited for the handshake).
- ``SUSPECT`` at once on a missed probe (the prober speeds up: see probe.py).
- ``DOWN`` after ``K`` consecutive missed probes with no reply in between, where
  ``K = max(3, ceil(log(1e-4) / log(loss)))``, at most 8: three on a clean path, more on
  a lossy one so that random loss alone declares a path down less often than once in
  10 000 probes (8 % loss: K = 4).
- back ``UP`` from ``DOWN`` after ``recover_after`` consecutive answered probes.

Recent loss (a loss episode on the path, seen in a second or two rather than in the
long window's ten): the fate of the last ``recent_window`` probes (40: 2 s on the active
path), where a probe counts as lost as soon as it is missed and is taken back if its
reply comes late after all. ``recent_lost`` is how many of them are lost now; scoring.py
turns 4 or more into score 0 (see there for why 4).

Local stalls: when every path goes silent at once, a stall on this machine (CPU
starved, a userspace tunnel or relay not scheduled) is likelier than several paths
failing together. So a path that reaches K misses while ``stall_suspected`` (set by the
engine: no other live path has answered since this one last did) stays SUSPECT: it is
declared DOWN at its next miss once another path has answered (there is then somewhere
to fail over to), or ``stall_max_s`` (2 s) after its K-th miss if none does (the whole
link is gone, and waiting longer would only delay failing closed).

Detection bound: a path that stops forwarding at time ``f`` is declared down by
``f + d + (K - 1 + 1) * I + margin`` at the latest, where ``d`` is the one-way delay from
the failure point back to the client and ``I`` the probe interval in force (the active
rate: 50 ms by default): the first probe whose reply the failure swallows was sent at
most one interval before its reply would have crossed the failure point, the K-th is
``K - 1`` intervals later, and it is declared missed one ``srtt + margin`` after it was
sent.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from app.core.pathstats import PathStats


class Health(enum.Enum):
    UNKNOWN = "unknown"
    UP = "up"
    SUSPECT = "suspect"
    DOWN = "down"


@dataclass(frozen=True)
class LivenessConfig:
    min_margin_s: float = 0.020  # floor of the "late" margin over srtt: scheduling noise
    initial_timeout_s: float = 1.0  # deadline of a probe before the path has any RTT
    hard_timeout_floor_s: float = 1.0  # a reply later than this counts as lost
    base_down_after: int = 3  # K on a clean path
    max_down_after: int = 8
    false_alarm_rate: float = 1e-4  # target chance of K random losses in a row
    recover_after: int = 3  # answered probes in a row to come back from DOWN
    # A path that never answered stays UNKNOWN this long after its first probe: one
    # WireGuard handshake retry (REKEY_TIMEOUT 5 s + 1/3 s jitter), then a handshake
    # and a probe round trip on a slow, queued path.
    connect_timeout_s: float = 8.0
    stall_max_s: float = 2.0  # longest deferral of DOWN while every path misses at once
    recent_window: int = 40  # probes in the recent-loss window (2 s at the active rate)


@dataclass(frozen=True)
class HealthChange:
    old: Health
    new: Health
    t: float
    detection_s: float | None = None  # DOWN: from the last reply to the declaration


@dataclass
class _Outstanding:
    sent: float
    deadline: float
    hard: float
    missed: bool = False
    while_down: bool = False  # sent while the path was DOWN: its loss is the outage's
    # sent before the path ever answered: it waited for the tunnel's first handshake, so
    # neither its loss nor its RTT says anything about the path
    connecting: bool = False


def down_after(loss: float, cfg: LivenessConfig) -> int:
    """How many consecutive misses declare a path down, given its recent loss rate."""
    if loss <= 0.0:
        return cfg.base_down_after
    if loss >= 1.0:
        return cfg.base_down_after
    k = math.ceil(math.log(cfg.false_alarm_rate) / math.log(loss))
    return max(cfg.base_down_after, min(cfg.max_down_after, k))


class ProbeTracker:
    """Outstanding probes of one path, and the path's health derived from them."""

    def __init__(self, stats: PathStats, cfg: LivenessConfig | None = None) -> None:
        self.stats = stats
        self.cfg = cfg or LivenessConfig()
        self.health = Health.UNKNOWN
        self._out: dict[int, _Outstanding] = {}
        self.consecutive_missed = 0
        self.consecutive_ok = 0
        self.last_reply: float | None = None
        self.up_since: float | None = None
        self.changed_at: float | None = None
        self._loss_when_answering = 0.0
        self.first_sent: float | None = None
        # True while every other path misses too (a local stall, likely): engine.py
        self.stall_suspected: Callable[[], bool] = lambda: False
        self._deferred_since: float | None = None
        # (seq, lost) of the probes whose fate is known, newest last
        self._recent: deque[tuple[int, bool]] = deque(maxlen=self.cfg.recent_window)

    # -- inputs -------------------------------------------------------------------

    def sent(self, seq: int, now: float) -> None:
        if self.first_sent is None:
            self.first_sent = now
        srtt = self.stats.srtt_ms
        if srtt is None:
            deadline = now + self.cfg.initial_timeout_s
            hard = now + max(self.cfg.hard_timeout_floor_s, self.cfg.initial_timeout_s)
        else:
            deadline = now + (srtt + max(self.cfg.min_margin_s * 1000,
                                         4 * (self.stats.rttvar_ms or 0.0))) / 1000
            hard = now + max(self.cfg.hard_timeout_floor_s, 3 * srtt / 1000)
        self._out[seq] = _Outstanding(sent=now, deadline=deadline, hard=hard,
                                      while_down=self.health is Health.DOWN,
                                      connecting=self.health is Health.UNKNOWN)

    def reply(self, seq: int, now: float) -> tuple[float | None, HealthChange | None]:
        """A reply to ``seq`` arrived: its RTT in ms (None if unknown, too late, or
        sent before the path first answered), and the health change it made."""
        probe = self._out.pop(seq, None)
        if probe is None:
            return None, None
        rtt_ms = None  # a connecting probe's time includes the wait for the handshake
        if not (probe.connecting or probe.while_down):
            self._recent_fate(seq, lost=False, late=probe.missed)
        if not probe.connecting:
            rtt_ms = (now - probe.sent) * 1000
            self.stats.add_reply(rtt_ms)
        if self.health is Health.UNKNOWN:
            # The other probes queued behind the first handshake: their replies, if
            # they come, would only repeat this news, and their misses are not the path's.
            self._out = {s: p for s, p in self._out.items() if not p.connecting}
        self.last_reply = now
        self._deferred_since = None
        # K is set by the loss seen while the path answered, not by the outage itself.
        self._loss_when_answering = self.stats.loss
        self.consecutive_missed = 0
        self.consecutive_ok += 1
        change = None
        if self.health is Health.UNKNOWN or (
            self.health is Health.DOWN and self.consecutive_ok >= self.cfg.recover_after
        ):
            self.up_since = now
            change = self._set(Health.UP, now)
        elif self.health is Health.SUSPECT:
            change = self._set(Health.UP, now)
        return rtt_ms, change

    def check(self, now: float) -> HealthChange | None:
        """Apply every deadline and hard timeout that has passed by ``now``."""
        change: HealthChange | None = None
        for seq in sorted(self._out):
            probe = self._out[seq]
            if probe.missed or min(probe.deadline, probe.hard) > now:
                continue
            probe.missed = True
            if not (probe.connecting or probe.while_down):
                self._recent_fate(seq, lost=True, late=False)
            self.consecutive_missed += 1
            self.consecutive_ok = 0
            change = self._on_miss(now) or change
        for seq in [s for s, p in self._out.items() if p.hard <= now]:
            probe = self._out[seq]
            if self.health is not Health.DOWN and not (probe.while_down or probe.connecting):
                self.stats.add_loss()
            del self._out[seq]
        return change

    def _recent_fate(self, seq: int, *, lost: bool, late: bool) -> None:
        if late:  # a missed probe answered after all: not lost
            for i, (s, _) in enumerate(self._recent):
                if s == seq:
                    self._recent[i] = (seq, False)
                    return
            return
        self._recent.append((seq, lost))

    def _on_miss(self, now: float) -> HealthChange | None:
        if self.health is Health.DOWN:
            return None
        if self.health is Health.UNKNOWN and (
                self.first_sent is None
                or now - self.first_sent < self.cfg.connect_timeout_s):
            return None  # still connecting: no verdict before the connect timeout
        if self.consecutive_missed >= down_after(self._loss_when_answering, self.cfg):
            if self.stall_suspected():
                if self._deferred_since is None:
                    self._deferred_since = now
                if now - self._deferred_since < self.cfg.stall_max_s:
                    return self._set(Health.SUSPECT, now) if self.health is Health.UP else None
            self._deferred_since = None
            detection = None if self.last_reply is None else now - self.last_reply
            self.up_since = None
            return self._set(Health.DOWN, now, detection)
        if self.health is Health.UP:
            return self._set(Health.SUSPECT, now)
        return None

    def _set(self, new: Health, now: float, detection: float | None = None) -> HealthChange:
        change = HealthChange(old=self.health, new=new, t=now, detection_s=detection)
        self.health = new
        self.changed_at = now
        return change

    # -- outputs ------------------------------------------------------------------

    def next_deadline(self) -> float | None:
        """The earliest time at which ``check`` would change something."""
        times = [p.hard if p.missed else p.deadline for p in self._out.values()]
        return min(times) if times else None

    @property
    def recent_lost(self) -> int:
        """Probes lost (missed and not answered since) among the last ``recent_window``."""
        return sum(1 for _, lost in self._recent if lost)

    @property
    def outstanding(self) -> int:
        return len(self._out)
