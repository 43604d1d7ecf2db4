"""The probes of all paths: one socket, one timer, batched receive, and the tunnels'
rx counters read at the same ticks.

Every wake-up (at most every 50 ms, and as often as the fastest path's interval):
read every queued reply (each with the kernel's receive time, probe.py), read the
tunnels' counters if 20 ms have passed (linkstats.py), send each probe that is due, let
each path's tracker apply its deadlines, and sleep until the next send or deadline. So
the cost is one loop wake-up per active interval for all paths together, not a timer,
a reader callback and a task per probe. Every send is on one grid (grid.py): the 50 ms
and 200 ms paths' probes leave at wake-ups of the busy path's 10 ms ones, and the
engine's tick shares them too.

Rates (probe.py has why): a path that is suspect, not answering yet, or any path while
the classes warm up: ``suspect`` (20 ms); a healthy path that carries a class and whose
tunnel sent packets other than our probes in the last 2 s: ``active`` (10 ms), and the
same path while its classes send nothing: ``backup`` (50 ms); the best path that carries
nothing (the backup, named by the engine): 50 ms; every other path, down ones
included: ``standby`` (200 ms). A path takes the fastest that applies.

Why the rx counters every 20 ms: the tunnel receiving is what vetoes a down verdict
(liveness.py), so it must be fresher than the silence the verdict waits for (about 70
ms); a stream that stops is suspected within two reads (20-40 ms after its last packet,
before the probe deadline of a path probed at the active rate, srtt + 20 ms + up to one
interval); and one netlink dump of every link costs 20-100 us here (two syscalls),
read at ticks that happen anyway: every 10 ms it was a sixth of the probing's CPU.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from app.core.errors import BraidError
from app.core.grid import Grid
from app.core.linkstats import LinkCounters
from app.core.liveness import Health, HealthChange
from app.core.paths import PathRuntime
from app.core.probe import ProbeRates, ProbeSocket

log = logging.getLogger(__name__)

OnChange = Callable[[PathRuntime, HealthChange | None], None]
OnError = Callable[[PathRuntime, str | None], None]
MAX_SLEEP_S = 0.050  # replies of slowly probed paths wait at most this in the socket
LINK_POLL_S = 0.020
BUSY_S = 2.0  # a carried path whose tunnel sent something not ours this recently is busy
REOPEN_S = 1.0  # how often a socket that could not be opened is tried again


@dataclass
class _Slot:
    path: PathRuntime
    interval_s: float
    source: str = ""
    target: str = ""
    next_send: float = 0.0
    last_send: float = 0.0
    sent: int = 0
    error: str | None = None
    rx: int | None = None  # the tunnel's rx_packets at the last read
    tx: int | None = None  # ... its tx_packets, and our probes sent, at the last read
    sent_at_read: int = 0
    replies: int = 0  # our replies read from the socket, and at the last counter read
    replies_at_read: int = 0
    traffic_at: float | None = None  # when its tunnel last sent packets not ours
    check_at: float | None = 0.0  # when its tracker next needs a look (None: nothing due)
    touched: bool = True  # something happened to it since its last check


class ProbeSet:
    def __init__(self, paths: list[PathRuntime], rates: ProbeRates, on_change: OnChange,
                 on_error: OnError, *, privileged: bool | None = None,
                 link_poll_s: float = LINK_POLL_S) -> None:
        self.paths = paths
        self.rates = rates
        self._on_change = on_change
        self._on_error = on_error
        self._privileged = privileged
        self._link_poll_s = link_poll_s
        self._slots = [_Slot(p, rates.suspect_s, p.spec.source, p.target) for p in paths]
        self._roles: tuple[frozenset[str], bool, str | None] = (frozenset(), True, None)
        self._owner: list[_Slot | None] = [None] * 65536  # seq -> the path that sent it
        self._seq = 0
        self._sock: ProbeSocket | None = None
        self._links: LinkCounters | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_handle: asyncio.TimerHandle | None = None
        self._wake_at: float | None = None
        self._grid: Grid | None = None
        self._reopen_at = 0.0
        self._last_poll = 0.0
        self.wakeups = 0
        self._stopped = False

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        """Open the socket and start probing (call on the engine's loop, in the
        namespace the tunnels are in). No permission for an ICMP socket is a BraidError."""
        self._loop = asyncio.get_running_loop()
        self._open()
        try:
            self._links = LinkCounters()
        except OSError as exc:  # no netlink: probes alone (no passive signal)
            log.warning("cannot read the tunnels' counters: %s", exc)
        now = self._loop.time()
        r = self.rates
        self._grid = Grid.for_periods(now, (r.active_s, r.backup_s, r.suspect_s,
                                            r.standby_s, self._link_poll_s, MAX_SLEEP_S))
        for slot in self._slots:
            slot.next_send = now
        self._schedule(now)

    @property
    def grid(self) -> Grid:
        """The grid the probes are sent on, for the engine's other timers (once
        started)."""
        assert self._grid is not None, "the probes have not started"
        return self._grid

    def _open(self) -> None:
        assert self._loop is not None
        try:
            self._sock = ProbeSocket(self._privileged)
        except PermissionError as exc:
            raise BraidError(
                f"cannot open an ICMP socket to probe the paths: {exc}",
                "run as root, or allow unprivileged ping: sysctl net.ipv4.ping_group_range="
                "'0 2147483647'") from None
        except OSError as exc:
            self._sock = None
            self._reopen_at = self._loop.time() + REOPEN_S
            for slot in self._slots:
                self._failed(slot, f"cannot open its socket: {exc}")

    def stop(self) -> None:
        self._stopped = True
        if self._wake_handle is not None:
            self._wake_handle.cancel()
        self._wake_handle = None
        if self._sock is not None:
            self._sock.close()
        if self._links is not None:
            self._links.close()
        self._sock = self._links = None

    def set_rates(self, carried: Iterable[str], warming: bool, backup: str | None = None) -> None:
        self._roles = (frozenset(carried), warming, backup)
        self._apply_rates()

    def _apply_rates(self) -> None:
        carrying, warming, backup = self._roles
        r = self.rates
        now = self._loop.time() if self._loop is not None else 0.0
        for slot in self._slots:
            h = slot.path.tracker.health
            options = [r.standby_s]
            if h in (Health.SUSPECT, Health.UNKNOWN) or warming:
                options.append(r.suspect_s)
            if h in (Health.UP, Health.SUSPECT) and slot.path.name in carrying:
                # BFD-like only while it carries someone's packets: a class with nothing
                # to send needs no fast verdict, and its first packets switch this on
                # within one counter read.
                options.append(r.active_s if self._busy(slot, now) else r.backup_s)
            if h is Health.UP and slot.path.name == backup:
                options.append(r.backup_s)
            self._set_interval(slot, min(options))

    def _busy(self, slot: _Slot, now: float) -> bool:
        return slot.traffic_at is not None and now - slot.traffic_at < BUSY_S

    def _set_interval(self, slot: _Slot, interval_s: float) -> None:
        """A shorter interval takes effect at once (the next probe goes one new
        interval after the last one, or now if that is past)."""
        if interval_s == slot.interval_s:
            return
        if interval_s > slot.interval_s:
            slot.path.tracker.rx_reset(self._loop.time() if self._loop is not None else None)
        slot.interval_s = interval_s
        if self._loop is None:
            return
        due = slot.last_send + interval_s
        if due < slot.next_send:
            slot.next_send = max(due, self._loop.time())
            self._schedule(slot.next_send)

    @property
    def sent(self) -> int:
        return sum(s.sent for s in self._slots)

    def interval_of(self, name: str) -> float:
        return next(s.interval_s for s in self._slots if s.path.name == name)

    # -- the tick -------------------------------------------------------------------

    def _schedule(self, when: float) -> None:
        assert self._loop is not None
        if self._stopped or (self._wake_at is not None and self._wake_at <= when):
            return
        if self._wake_handle is not None:
            self._wake_handle.cancel()
        self._wake_at = when
        self._wake_handle = self._loop.call_at(when, self._wake)

    def _wake(self) -> None:
        self._wake_handle = self._wake_at = None
        if self._stopped or self._loop is None:
            return
        self.wakeups += 1
        now = self._loop.time()
        if self._sock is None and now >= self._reopen_at:
            self._open()
        self._drain(now)
        if self._links is not None and now - self._last_poll >= self._link_poll_s * 0.9:
            self._poll_links(now)
        for slot in self._slots:
            if slot.next_send <= now + 0.0005:
                self._send(slot, now)
        grid = self.grid
        nxt = grid.at_or_after(now + MAX_SLEEP_S - grid.step_s)
        for slot in self._slots:
            tracker = slot.path.tracker
            if slot.touched or (slot.check_at is not None and slot.check_at <= now):
                change = tracker.check(now)
                if change is not None:
                    self._on_change(slot.path, change)
                slot.check_at = tracker.next_deadline(now)
                slot.touched = False
            nxt = min(nxt, slot.next_send, slot.check_at if slot.check_at is not None else nxt)
        self._schedule(max(nxt, now + 0.0005))

    def _send(self, slot: _Slot, now: float) -> None:
        self._seq = (self._seq + 1) & 0xFFFF
        seq = self._seq
        self._owner[seq] = slot
        slot.path.tracker.sent(seq, now)
        slot.sent += 1
        slot.last_send = now
        slot.touched = True
        # On a steady grid, so that the arrival pattern stays regular; never a burst to
        # catch up after a late wake-up. On the shared grid (one wake-up for every path
        # due together), which a period that is a multiple of its step keeps exactly.
        slot.next_send = self.grid.at_or_after(
            max(slot.next_send + slot.interval_s, now + slot.interval_s / 2))
        try:
            if self._sock is None:
                raise OSError("no socket (reopening)")
            self._sock.send(slot.source, slot.target, seq)
        except OSError as exc:
            # Counted as sent: the probe will be missed, which is the truth about the path
            # (ENETUNREACH or EADDRNOTAVAIL while its tunnel is being recreated).
            log.debug("probe %s: send failed: %s", slot.path.name, exc)
            self._failed(slot, f"send failed: {exc}")

    def _drain(self, now: float) -> None:
        if self._sock is None:
            return
        replies, error = self._sock.drain(now)
        if error is not None:
            log.debug("probe socket: %s", error)
        for r in replies:
            slot = self._owner[r.seq]
            if slot is None or r.source != slot.target:
                continue
            _, change = slot.path.tracker.reply(r.seq, r.t)
            slot.replies += 1
            slot.touched = True
            if slot.error is not None:
                slot.error = None
                self._on_error(slot.path, None)
            self._on_change(slot.path, change)

    def _poll_links(self, now: float) -> None:
        assert self._links is not None
        try:
            counts = self._links.read([s.path.spec.interface for s in self._slots])
        except OSError as exc:
            log.debug("link counters: %s", exc)
            return
        since, self._last_poll = self._last_poll, now
        roles_changed = False
        for slot in self._slots:
            c = counts.get(slot.path.spec.interface)
            if c is None:
                slot.rx = slot.tx = None
                continue
            if slot.tx is not None and c.tx_packets - slot.tx > slot.sent - slot.sent_at_read:
                roles_changed |= not self._busy(slot, now)
                slot.traffic_at = now
            elif slot.traffic_at is not None and not self._busy(slot, now):
                slot.traffic_at = None
                roles_changed = True
            slot.tx, slot.sent_at_read = c.tx_packets, slot.sent
            replies, slot.replies_at_read = slot.replies - slot.replies_at_read, slot.replies
            slot.path.link.update(now, c.rx_bytes, c.tx_bytes)
            if slot.rx is not None:
                rose = c.rx_packets > slot.rx
                # (a reply that came between the drain and this read counts as other:
                # it only delays a silence by one read)
                change = slot.path.tracker.rx_poll(now, since, rose,
                                                   c.rx_packets - slot.rx > replies)
                slot.touched = slot.touched or rose
                if change is not None:
                    self._on_change(slot.path, change)
            slot.rx = c.rx_packets
        if roles_changed:
            self._apply_rates()

    def _failed(self, slot: _Slot, why: str) -> None:
        first = slot.error is None
        slot.error = why
        if first:
            self._on_error(slot.path, why)
