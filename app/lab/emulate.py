"""The link emulation itself, without sockets: what happens to each packet, and when.

`Link` decides per packet: dropped (and why) or the time it leaves the relay.
`ProfileState` holds what a link is set to now: a base profile, changed for good by
`impair` and lasting timeline entries, with timed overlays and ramps on top.
Times are `time.monotonic()` seconds, shared by every namespace on the host.
"""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any

from app.lab.link import LinkProfile

IP_UDP_OVERHEAD = 28  # rate limits count IP bytes: the UDP payload plus these


@dataclass
class Counters:
    in_pkts: int = 0
    in_bytes: int = 0
    out_pkts: int = 0
    out_bytes: int = 0
    lost_random: int = 0
    lost_burst: int = 0
    lost_queue: int = 0
    lost_down: int = 0


class Link:
    """One direction of one path."""

    def __init__(self, profile: LinkProfile, seed: int) -> None:
        self.profile = profile
        self.counters = Counters()
        self._rng = random.Random(seed)
        self._bad = False  # Gilbert-Elliott state
        self._free_at = 0.0  # when the rate limiter has sent everything queued so far
        self._last_release = 0.0  # FIFO: no packet leaves before the one ahead of it

    def set_profile(self, profile: LinkProfile) -> None:
        if profile.burst_loss is None:
            self._bad = False
        self.profile = profile

    def queue_delay(self, now: float) -> float:
        return max(0.0, self._free_at - now)

    def admit(self, now: float, size: int) -> float | None:
        """The time this packet leaves, or None if the link drops it."""
        p, c, rng = self.profile, self.counters, self._rng
        c.in_pkts += 1
        c.in_bytes += size
        if p.down:
            c.lost_down += 1
            return None
        if p.burst_loss is not None:
            p_gb, p_bg = p.burst_loss
            if self._bad:
                self._bad = rng.random() * 100.0 >= p_bg
            else:
                self._bad = rng.random() * 100.0 < p_gb
            if self._bad:
                c.lost_burst += 1
                return None
        if p.loss_pct > 0.0 and rng.random() * 100.0 < p.loss_pct:
            c.lost_random += 1
            return None
        depart = now
        if p.rate_mbit is not None:
            tx = (size + IP_UDP_OVERHEAD) * 8.0 / (p.rate_mbit * 1e6)
            start = max(now, self._free_at)
            if start - now + tx > p.queue_ms / 1000.0:
                c.lost_queue += 1  # tail drop: the queue is full
                return None
            self._free_at = depart = start + tx
        delay = p.delay_ms
        if p.jitter_ms > 0.0:
            delay = max(0.0, rng.gauss(p.delay_ms, p.jitter_ms))
        release = depart + delay / 1000.0
        if p.reorder_pct > 0.0 and rng.random() * 100.0 < p.reorder_pct:
            pass  # may overtake: keeps its own release time
        else:
            release = max(release, self._last_release)
            self._last_release = release
        c.out_pkts += 1
        c.out_bytes += size
        return release


@dataclass
class _Overlay:
    start: float
    end: float | None  # None: lasts until folded into the base
    changes: dict[str, Any]
    ramp_from: dict[str, Any] = field(default_factory=dict)  # ramps only


@dataclass
class ProfileState:
    """What one link is set to, at any time: base, then overlays in order of start."""

    base: LinkProfile
    overlays: list[_Overlay] = field(default_factory=list)

    def set_now(self, changes: dict[str, Any]) -> None:
        """An operator's change: takes effect now and wins over running overlays."""
        self.base = dataclasses.replace(self.base, **changes)
        for o in self.overlays:
            for key in changes:
                o.changes.pop(key, None)
                o.ramp_from.pop(key, None)

    def add(self, now: float, changes: dict[str, Any], for_s: float | None, ramp: bool) -> None:
        if for_s is None:
            self.set_now(changes)
            return
        start_values = dataclasses.asdict(self.effective(now))
        self.overlays.append(_Overlay(
            start=now, end=now + for_s, changes=dict(changes),
            ramp_from={k: start_values[k] for k in changes} if ramp else {},
        ))

    def expire(self, now: float) -> bool:
        """Drop finished overlays (a finished ramp stays, folded into the base)."""
        done = [o for o in self.overlays if o.end is not None and o.end <= now]
        for o in done:
            self.overlays.remove(o)
            if o.ramp_from:
                self.base = dataclasses.replace(self.base, **o.changes)
        return bool(done)

    def ramping(self) -> bool:
        return any(o.ramp_from for o in self.overlays)

    def next_end(self) -> float | None:
        ends = [o.end for o in self.overlays if o.end is not None]
        return min(ends) if ends else None

    def effective(self, now: float) -> LinkProfile:
        values: dict[str, Any] = {}
        for o in self.overlays:
            for key, target in o.changes.items():
                if key in o.ramp_from and o.end is not None and o.end > o.start:
                    frac = min(1.0, max(0.0, (now - o.start) / (o.end - o.start)))
                    start = o.ramp_from[key]
                    # Ramping from unlimited: start from the target, nothing to interpolate.
                    values[key] = target if start is None else start + (target - start) * frac
                else:
                    values[key] = target
        return dataclasses.replace(self.base, **values) if values else self.base
