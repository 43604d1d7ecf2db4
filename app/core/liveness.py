"""Is a path alive? Outstanding probes, the silence after them, and the path's health.

Pure logic driven by the prober with explicit times (seconds, monotonic), so the
detection rules are unit tested without a network.

**Late is not lost.** A reply that comes late still proves the path alive, and so does
any packet the tunnel receives (its rx counter, read every 20 ms by the prober: a
flow's downstream, TCP's ACKs of an upload). A path is declared down only on evidence
of *silence*: nothing at all has arrived from it for longer than its own recent delays
make likely.

Per probe sent at ``s`` (``ref = max(srtt, last RTT)``: a path whose delay just rose is
expected at its new delay):
- it is **missed** when no reply has come by ``s + srtt + max(20 ms, 4 * rttvar)``
  (RFC 6298's RTO shape; 1 s before the first RTT): the path becomes SUSPECT and the
  probe counts in the recent-loss window (taken back if its reply comes after all);
- it is **lost** (the long loss window) when no reply has come by its hard timeout,
  ``max(1 s, 3 * srtt)``.

**Silence.** ``quiet_since`` is the later of the first unanswered probe's expected
arrival (``s + ref``) and the last time anything arrived (a reply, or the tunnel's rx
counter rising). The path is declared DOWN when
- it has been quiet for ``late_limit = late_step + max(20 ms, late)`` — ``late_step``
  (50 ms) is the delay step, in either direction, that the engine rides out as a worse
  score rather than an outage, ``late`` the most a reply of this path came after its
  smoothed RTT in the last 10 s (pathstats.py: its own recent delay distribution);
- and ``K`` probes in a row are missed, ``K = max(4, ceil(log(1e-4) / log(loss)))``, at
  most 8, where ``loss`` is the long window's or, when higher, the recent window's as
  of the last reply (an episode that has just begun raises K within a second), so that
  random loss alone declares a slowly probed path down less often than once in 10^6
  probes: 14 hours at 20 probes a second (cn-us's us, 8 % round-trip loss: K = 6; with
  1e-4, K = 4 declared it down about once in 10 minutes at the backup rate). On a
  carried path, probed every 10 ms, the silence comes last: 8 probes fit in 80 ms.

**Detection bound.** A path that stops forwarding at time ``f`` at a point whose delay
back to the client is ``d`` delivers its last reply by ``f + d``; the next probe was
sent one interval ``I`` after the one answered, so it is expected by ``f + d + I``, and
the path is declared down by ``f + d + I + late_limit``: on a carried path (I = 10 ms)
on a quiet machine ``d + 80 ms``. The round trip does not enter.

**Silent** (evidence, not yet a verdict): a path (UP or SUSPECT) that has been quiet
for ``silent_limit = max(10 ms, late)`` (the late limit without the delay step, on a
lower floor: an evasion undoes itself at the next reply, so on a steady path this comes
before its first probe is missed) with ``E``
probes in a row overdue (past ``s + ref``), ``E = max(2, ceil(log(1e-4) / log(loss)))``
(at most 8), sent at most twice the silent limit apart (a path probed slower, at the
backup rate of a class that sends nothing, is late or down but never silent: one random
loss and a reply a little after its mean would do, and evading it saves no packets),
and whose tunnel received nothing but our replies at its last counter read
(a download its replies queue behind is no silence), or whose tunnel stopped receiving
(passive, below), is *silent*: a delay
step and an outage still look the same, but a path this quiet this long is one or the
other. The deciders may route a class around it at once where that costs nothing
(decide.py's evasion, a shared exit); only the full late limit declares it down. Bound:
``f + d + I + silent_limit`` (on a path probed every ``I`` <= the silent limit, E = 2 is
overdue by then), 60 ms sooner than the verdict: on a quiet carried path ``d + 20 ms``
(with a flow's packets arriving too, the first counter read without them: 20-40 ms).

**Passive suspicion.** A path whose rx counter rose at each of the last 5 polls (it
carries a stream, probe replies included) and then at none of 2 polls is SUSPECT at
once, before its probes say so; rx rising again clears that suspicion. The counters
never declare a path down by themselves: only the silence above does, and rx arriving
vetoes it. Quiet polls are evidence only where something was due: where the run's rises
were a stream's own packets (more than our replies), or where the path owes an answer
(``quiet_since`` has passed). A run made of our replies alone pauses whenever our
probes did: the engine's thread stalled for ``S`` (a GC pause, a loaded machine) sends
nothing, and one round trip later the replies stop for ``S`` too. Counted, every stall
over 40 ms on a path whose round trip is over 40 ms read as the path going silent (in
the lab, 11 of 10 stalls of 80 ms, each one moving class default off it).

Health:
- ``UNKNOWN`` until the first reply; then ``UP``. A path that has never answered is not
  declared down before ``connect_timeout_s`` (8 s) after its first probe: its tunnel's
  first handshake takes a round trip before any probe can, and a lost handshake is
  retried only after REKEY_TIMEOUT (5 s, plus up to 1/3 s). Probes sent before the first
  reply are neither loss nor RTT samples (they waited for the handshake).
- ``SUSPECT`` on a missed probe or passive suspicion (``suspect_reason``: why, ``SILENT``
  once the silence above is reached); ``UP`` again on a reply.
- ``DOWN`` on silence (above); back ``UP`` after ``recover_after`` answered probes.

Recent loss (a loss episode, seen in a second rather than in the long window's ten): the
fate of the probes of the last 2 s (at least the last 40), where a probe counts as lost
as soon as it is missed and is taken back if its reply comes late; ``recent_lost`` of
``recent_size``. Probes lost while DOWN are not loss: an outage is the DOWN state.

Local stalls: when every path goes silent at once, a stall on this machine is likelier
than several paths failing together. A path whose silence is due while
``stall_suspected`` (the engine: no other live path has answered since this one last
was heard) stays SUSPECT, for at most ``stall_max_s`` (2 s). The backup path, probed
every 50 ms, answers within the silence a carried path needs, so a real failure is not
held.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from app.core.pathstats import PathStats


class Health(enum.Enum):
    UNKNOWN = "unknown"
    UP = "up"
    SUSPECT = "suspect"
    DOWN = "down"


@dataclass(frozen=True)
class LivenessConfig:
    min_margin_s: float = 0.020  # floor of the "late" margin over srtt: scheduling noise
    late_step_s: float = 0.050  # a delay step up to this is late, not lost
    late_cap_s: float = 1.0  # the recent-lateness allowance never exceeds this
    initial_timeout_s: float = 1.0  # deadline of a probe before the path has any RTT
    hard_timeout_floor_s: float = 1.0  # a reply later than this counts as lost
    base_down_after: int = 4  # K on a clean path
    max_down_after: int = 8
    false_alarm_rate: float = 1e-6  # target chance of K random losses in a row
    # The same for E, the misses that make a path silent: an evasion costs nothing where
    # it is allowed and undoes itself on the next reply, so 1 in 10^4 probes will do.
    silent_false_rate: float = 1e-4
    silent_after: int = 2  # E on a clean path
    # The floor of the silent limit. Lower than the verdict's: an evasion is undone by
    # the next reply, and the replies' times are the kernel's (probe.py), so this process's
    # own wake-up noise does not make a path late; the path's recent lateness still
    # raises the limit (silent_limit_s).
    silent_floor_s: float = 0.010
    recover_after: int = 3  # answered probes in a row to come back from DOWN
    # A path that never answered stays UNKNOWN this long after its first probe: one
    # WireGuard handshake retry (REKEY_TIMEOUT 5 s + 1/3 s jitter), then a handshake
    # and a probe round trip on a slow, queued path.
    connect_timeout_s: float = 8.0
    stall_max_s: float = 2.0  # longest deferral of DOWN while every path is silent
    recent_s: float = 2.0  # the recent-loss window: the probes of the last 2 s ...
    recent_min: int = 40  # ... but at least the last 40
    passive: bool = True  # the tunnel's rx counter vetoes silence and raises suspicion
    rx_steady_polls: int = 5  # polls in a row with rx rising: the path carries a stream
    rx_quiet_polls: int = 2  # ... then polls without: suspect

    def __post_init__(self) -> None:
        if min(self.min_margin_s, self.late_step_s, self.late_cap_s) < 0:
            raise ValueError("liveness margins must be >= 0")


@dataclass(frozen=True)
class HealthChange:
    old: Health
    new: Health
    t: float
    detection_s: float | None = None  # DOWN: how long the path had been silent
    why: str | None = None


class ProbeObserver(Protocol):
    """Fed every probe outcome as it is known (the change detector, detect.py)."""

    def rtt(self, t: float, rtt_ms: float) -> None: ...
    def fate(self, t: float, lost: bool) -> None: ...
    def taken_back(self, t: float) -> None: ...  # a probe counted lost was answered late


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


def down_after(loss: float, cfg: LivenessConfig, *, silent: bool = False) -> int:
    """How many consecutive misses declare a path down (``silent``: make it silent),
    given its recent loss rate."""
    base, rate = (cfg.silent_after, cfg.silent_false_rate) if silent else (
        cfg.base_down_after, cfg.false_alarm_rate)
    if loss <= 0.0 or loss >= 1.0:
        return base
    k = math.ceil(math.log(rate) / math.log(loss))
    return max(base, min(cfg.max_down_after, k))


PASSIVE = "passive"  # its tunnel stopped receiving
SILENT = "silent"  # quiet past its silent limit (module docstring)


class ProbeTracker:
    """Outstanding probes of one path, and the path's health derived from them."""

    def __init__(self, stats: PathStats, cfg: LivenessConfig | None = None) -> None:
        self.stats = stats
        self.cfg = cfg or LivenessConfig()
        self.health = Health.UNKNOWN
        self._out: dict[int, _Outstanding] = {}  # in send order
        self.consecutive_missed = 0
        self.consecutive_ok = 0
        self.last_reply: float | None = None
        self.last_rx: float | None = None  # rx counter evidence: something arrived after
        self._answered_sent: float | None = None  # send time of the newest answered probe
        # the oldest probe sent after the newest answered one, forgotten at its hard
        # timeout while still owed: the silence goes on from it
        self._owed_lost: float | None = None
        self.up_since: float | None = None
        self.changed_at: float | None = None
        self._loss_when_answering = 0.0
        self.first_sent: float | None = None
        self.suspect_reason: str | None = None
        # True while every other path is silent too (a local stall, likely): engine.py
        self.stall_suspected: Callable[[], bool] = lambda: False
        self.observer: ProbeObserver | None = None
        self._deferred_since: float | None = None
        self._rx_run = 0
        self._rx_stream = 0  # ... of which rose by more than our replies (a stream's own)
        self._rx_quiet = 0
        self._rx_other = False  # the last read saw packets other than our replies
        self._rx_settle_until: float | None = None
        # (seq, sent, lost) of the probes whose fate is known, newest last
        self._recent: deque[tuple[int, float, bool]] = deque()
        self._recent_lost = 0

    # -- inputs -------------------------------------------------------------------

    def sent(self, seq: int, now: float) -> None:
        if self.first_sent is None:
            self.first_sent = now
        srtt = self.stats.srtt_ms
        if srtt is None:
            deadline = now + self.cfg.initial_timeout_s
            hard = now + max(self.cfg.hard_timeout_floor_s, self.cfg.initial_timeout_s)
        else:
            deadline = now + (srtt / 1000 + self.margin_s())
            hard = now + max(self.cfg.hard_timeout_floor_s, 3 * srtt / 1000)
        self._out[seq] = _Outstanding(sent=now, deadline=deadline, hard=hard,
                                      while_down=self.health is Health.DOWN,
                                      connecting=self.health is Health.UNKNOWN)

    def reply(self, seq: int, now: float) -> tuple[float | None, HealthChange | None]:
        """A reply to ``seq`` arrived at ``now``: its RTT in ms (None if unknown, too
        late, or sent before the path first answered), and the health change it made.
        A reply to a probe already forgotten still proves the path delivers."""
        probe = self._out.pop(seq, None)
        if probe is None:
            return None, self.heard(now)
        rtt_ms = None  # a connecting probe's time includes the wait for the handshake
        counted = not (probe.connecting or probe.while_down)
        if counted:
            self._recent_fate(seq, probe.sent, lost=False, late=probe.missed)
        if not probe.connecting:
            rtt_ms = max(0.0, now - probe.sent) * 1000
            self.stats.add_reply(rtt_ms, now)
            if self.observer is not None and counted:
                self.observer.rtt(now, rtt_ms)
        if self.health is Health.UNKNOWN:
            # The other probes queued behind the first handshake: their replies, if
            # they come, would only repeat this news, and their misses are not the path's.
            self._out = {s: p for s, p in self._out.items() if not p.connecting}
        self.last_reply = now if self.last_reply is None else max(self.last_reply, now)
        if self._answered_sent is None or probe.sent > self._answered_sent:
            self._answered_sent = probe.sent
        if self._owed_lost is not None and probe.sent > self._owed_lost:
            self._owed_lost = None
        self._deferred_since = None
        # K is set by the loss seen while the path answered, not by the outage itself:
        # the long window's, or the recent window's when an episode has just begun.
        recent = self._recent_lost / len(self._recent) if self._recent else 0.0
        self._loss_when_answering = max(self.stats.loss, recent)
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

    def heard(self, t: float) -> HealthChange | None:
        """Something arrived through the path by ``t`` (passive evidence: its tunnel's
        rx counter rose). Clears a passive suspicion; never ends DOWN (only probes do)."""
        if self.last_rx is None or t > self.last_rx:
            self.last_rx = t
        self._deferred_since = None
        if self.health is Health.SUSPECT and self.suspect_reason == PASSIVE:
            return self._set(Health.UP, t)
        return None

    def rx_reset(self, now: float | None = None) -> None:
        """Forget the steady run: the path's probes just slowed, so a counter that rose at
        every read only because they were fast will now pause, and that is no silence.
        The replies to the fast probes still in flight keep the counter rising for about
        one round trip (on a 150 ms path, seven reads): those rises, up to ``now`` plus a
        round trip and a late margin, build no new run, or their end would read as the
        tunnel going quiet."""
        self._rx_run = self._rx_stream = 0
        if now is not None:
            ref_s = max(self.stats.srtt_ms or 0.0, self.stats.last_rtt_ms or 0.0) / 1000
            self._rx_settle_until = now + ref_s + self.margin_s()

    def rx_poll(self, now: float, since: float, rose: bool,
                other: bool | None = None) -> HealthChange | None:
        """The tunnel's rx counter was read at ``now`` (last read at ``since``); ``other``:
        it rose by more than the probe replies read meanwhile (default: ``rose``)."""
        if not self.cfg.passive:
            return None
        # A path that received something besides our replies since the last read is not
        # silent, however late its replies are: its queue holds a download, not nothing.
        # (The read says only that it came after ``since``, which alone would let a 10 ms
        # silent limit pass while a download keeps arriving.)
        self._rx_other = rose if other is None else other
        if rose:
            # A steady stream is one that rose at every read: probes every 50 ms, read
            # every 20 ms, rise at most every other read and are no stream to miss.
            if self._rx_quiet > 0:
                self._rx_run = self._rx_stream = 0
            settling = self._rx_settle_until is not None and now <= self._rx_settle_until
            self._rx_run = 0 if settling else self._rx_run + 1
            self._rx_stream = 0 if settling or not self._rx_other else self._rx_stream + 1
            self._rx_quiet = 0
            return self.heard(since)  # it arrived after the last read, not before
        self._rx_quiet += 1
        steady = self.cfg.rx_steady_polls
        if self._rx_run >= steady and self._rx_quiet >= self.cfg.rx_quiet_polls and \
                self.health is Health.UP and (self._rx_stream >= steady or self._owes(now)):
            return self._set(Health.SUSPECT, now, why=PASSIVE)
        return None

    def _owes(self, now: float) -> bool:
        """An answer was due by ``now`` and has not come (module docstring: a pause in
        our own replies that follows a pause in our own probes is no silence)."""
        q = self.quiet_since()
        return q is not None and q <= now

    def check(self, now: float) -> HealthChange | None:
        """Apply every deadline, hard timeout and silence that has passed by ``now``."""
        missed = False
        for seq, probe in self._out.items():
            if probe.missed or probe.deadline > now:
                continue
            probe.missed = True
            if not (probe.connecting or probe.while_down):
                self._recent_fate(seq, probe.sent, lost=True, late=False)
            self.consecutive_missed += 1
            self.consecutive_ok = 0
            missed = True
        change = self._verdict(now)  # before the hard timeouts: an outage is not loss
        gone = [s for s, p in self._out.items() if p.hard <= now]
        for seq in gone:
            probe = self._out.pop(seq)
            if self.health is not Health.DOWN and not (probe.while_down or probe.connecting):
                self.stats.add_loss(now)
                if (self._answered_sent is None or probe.sent > self._answered_sent) and (
                        self._owed_lost is None or probe.sent < self._owed_lost):
                    self._owed_lost = probe.sent
        if change is None and missed and self.health is Health.UP:
            change = self._set(Health.SUSPECT, now, why="probe late")
        # An UP path too: its silence (at its own lateness, 10 ms at least) can come
        # before its first probe is missed (20 ms at least).
        if self.health in (Health.UP, Health.SUSPECT) and self._silent(now) and (
                change is None or change.new is Health.SUSPECT):
            old = change.old if change is not None else self.health
            change = replace(self._set(Health.SUSPECT, now, why=SILENT), old=old)
        return change

    def _silent(self, now: float) -> bool:
        """Whether a suspect path just reached the silence of the module docstring."""
        # Already silent; every path quiet (this machine, not this path); or its tunnel
        # still receiving more than our replies.
        if self.suspect_reason in (SILENT, PASSIVE) or self.stall_suspected() or \
                self._rx_other:
            return False
        quiet = self.quiet_since()
        if quiet is None or now - quiet < self.silent_limit_s():
            return False
        # Overdue (past their expected arrival), not missed (past their deadline): the
        # silence limit is already the margin, and counting misses would add a probe
        # interval to the bound for no less chance of a false alarm.
        ref_s = max(self.stats.srtt_ms or 0.0, self.stats.last_rtt_ms or 0.0) / 1000
        need = down_after(self._loss_when_answering, self.cfg, silent=True)
        # ... and due at most twice the silent limit apart: on a path probed slower than
        # that (the backup rate, 50 ms: its classes send nothing) the second reply is only
        # just due when the first is quiet past the limit, and a reply later than its mean
        # after one random loss is no silence (it made class default evade an idle path
        # for nothing about once a minute on cn-us, saving nobody's packets). Such a path
        # is late, or down, never silent.
        gap_s = 2 * self.silent_limit_s()
        overdue, prev = 0, None
        for p in self._out.values():
            if p.connecting or p.while_down or (
                    self._answered_sent is not None and p.sent <= self._answered_sent):
                continue
            if p.sent + ref_s > now or (prev is not None and p.sent - prev > gap_s):
                break
            overdue, prev = overdue + 1, p.sent
            if overdue >= need:
                return True
        return False

    @property
    def silent(self) -> bool:
        """Suspect on evidence of silence: quiet past its silent limit, or its tunnel
        stopped receiving."""
        return self.health is Health.SUSPECT and self.suspect_reason in (SILENT, PASSIVE)

    def _recent_fate(self, seq: int, sent: float, *, lost: bool, late: bool) -> None:
        if late:  # a missed probe answered after all: not lost
            for i, (s, t, was_lost) in enumerate(self._recent):
                if s == seq and was_lost:
                    self._recent[i] = (seq, t, False)
                    self._recent_lost -= 1
                    if self.observer is not None:
                        self.observer.taken_back(sent)
                    return
            return
        self._recent.append((seq, sent, lost))
        self._recent_lost += lost
        if self.observer is not None:
            self.observer.fate(sent, lost)
        while len(self._recent) > self.cfg.recent_min and \
                self._recent[0][1] < sent - self.cfg.recent_s:
            self._recent_lost -= self._recent.popleft()[2]

    def _verdict(self, now: float) -> HealthChange | None:
        """DOWN when the silence rules say so (module docstring)."""
        if self.health is Health.DOWN:
            return None
        k = down_after(self._loss_when_answering, self.cfg)
        if self.consecutive_missed < k:
            return None
        if self.health is Health.UNKNOWN:
            if self.first_sent is None or now - self.first_sent < self.cfg.connect_timeout_s:
                return None  # still connecting: no verdict before the connect timeout
            return self._set(Health.DOWN, now)
        quiet = self.quiet_since()
        if quiet is None or now - quiet < self.late_limit_s():
            return None
        if self.stall_suspected():
            if self._deferred_since is None:
                self._deferred_since = now
            if now - self._deferred_since < self.cfg.stall_max_s:
                if self.health is Health.UP:
                    return self._set(Health.SUSPECT, now, why="every path is silent")
                return None
        self._deferred_since = None
        self.up_since = None
        return self._set(Health.DOWN, now, detection=now - self.last_heard_or(quiet))

    def _set(self, new: Health, now: float, detection: float | None = None,
             why: str | None = None) -> HealthChange:
        change = HealthChange(old=self.health, new=new, t=now, detection_s=detection, why=why)
        self.health = new
        self.changed_at = now
        self.suspect_reason = why if new is Health.SUSPECT else None
        return change

    # -- outputs ------------------------------------------------------------------

    def margin_s(self) -> float:
        return max(self.cfg.min_margin_s, 4 * (self.stats.rttvar_ms or 0.0) / 1000)

    def late_limit_s(self) -> float:
        """How long a path may be silent past its expected reply before it is down: the
        delay step, and its own recent lateness, at least the scheduling floor."""
        return self.cfg.late_step_s + self._lateness_s(self.cfg.min_margin_s)

    def silent_limit_s(self) -> float:
        """How long a path may be quiet past its expected reply before it is *silent*:
        its own recent lateness, at least ``silent_floor_s``."""
        return self._lateness_s(self.cfg.silent_floor_s)

    def _lateness_s(self, floor_s: float) -> float:
        return max(floor_s, min(self.cfg.late_cap_s, self.stats.late_ms() / 1000))

    @property
    def last_heard(self) -> float | None:
        """The last time anything arrived from the path: a reply or rx evidence."""
        times = [t for t in (self.last_reply, self.last_rx) if t is not None]
        return max(times) if times else None

    def last_heard_or(self, default: float) -> float:
        heard = self.last_heard
        return default if heard is None else heard

    def quiet_since(self) -> float | None:
        """Since when the path owes an answer and nothing has arrived (None: it owes
        none: every probe sent since the last answered one is still within its RTT)."""
        first = next((p for p in self._out.values()
                      if not (p.connecting or p.while_down)
                      and (self._answered_sent is None or p.sent > self._answered_sent)),
                     None)
        sent = [t for t in (first.sent if first else None, self._owed_lost) if t is not None]
        if not sent:
            return None
        ref_ms = max(self.stats.srtt_ms or 0.0, self.stats.last_rtt_ms or 0.0)
        due = min(sent) + ref_ms / 1000
        heard = self.last_heard
        return due if heard is None else max(due, heard)

    def next_deadline(self, now: float | None = None) -> float | None:
        """The earliest time after ``now`` at which ``check`` could change something (a
        silence already past without a verdict is judged again at the next miss).
        Deadlines grow with the send order, so the first probe not yet missed and the
        first missed one (its hard timeout) are enough: O(1) on a steady path."""
        times = []
        need_miss = need_hard = True
        for p in self._out.values():
            if p.missed and need_hard:
                times.append(p.hard)
                need_hard = False
            elif not p.missed and need_miss:
                times.append(p.deadline)
                need_miss = False
            if not (need_miss or need_hard):
                break
        if self.health in (Health.UP, Health.SUSPECT):
            quiet = self.quiet_since()
            for limit in (self.silent_limit_s(), self.late_limit_s()):
                if quiet is not None and (now is None or quiet + limit > now):
                    times.append(quiet + limit)
            if self._deferred_since is not None:
                times.append(self._deferred_since + self.cfg.stall_max_s)
        return min(times) if times else None

    @property
    def recent_lost(self) -> int:
        """Probes lost (missed and not answered since) in the recent window."""
        return self._recent_lost

    @property
    def recent_size(self) -> int:
        return len(self._recent)

    @property
    def outstanding(self) -> int:
        return len(self._out)
