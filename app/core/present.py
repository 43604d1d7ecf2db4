"""Every word and number a user reads about a connection, from snapshots: one presenter
for the CLI (`braid status`, `braid up`) and the tray app, so that they agree ("suspect"
and "suspected" used to disagree). Pure functions, no Qt, tested once."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from app.core.errors import BraidError
from app.core.model import (
    CLASSES,
    ConnState,
    EngineSnapshot,
    ErrorInfo,
    Event,
    EventKind,
    PathSnapshot,
)

STATE_LABELS: dict[ConnState, str] = {
    ConnState.DISCONNECTED: "Disconnected",
    ConnState.CONNECTING: "Connecting…",
    ConnState.CONNECTED: "Connected",
    ConnState.DEGRADED: "Degraded",
    ConnState.FAILING_OVER: "Failing over",
    ConnState.DISCONNECTING: "Disconnecting…",
    ConnState.ERROR: "Error",
    ConnState.BLOCKED: "Blocked",
}
BLOCKED_CLASS = "blocked: no path"
_REPORT_FIX = "this is a bug in Braid; run `braid -v` from a terminal and report what it prints"


@dataclass(frozen=True)
class UserMessage:
    """An error for a dialog: what went wrong and what to do about it."""

    what: str
    fix: str

    @classmethod
    def from_error(cls, exc: BaseException) -> UserMessage:
        if isinstance(exc, BraidError):
            return cls(exc.what, exc.fix)
        return cls(f"{type(exc).__name__}: {exc}", _REPORT_FIX)

    @classmethod
    def from_info(cls, info: ErrorInfo) -> UserMessage:
        return cls(info.what, info.fix)


@dataclass(frozen=True)
class Notice:
    """A desktop notification."""

    title: str
    message: str
    critical: bool = False


def fmt_ms(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def fmt_pct(fraction: float | None) -> str:
    if fraction is None:
        return "–"
    return f"{fraction * 100:.1f} %"


def path_status(path: PathSnapshot) -> str:
    if not path.up:
        # The engine marks a path that has not answered yet (its handshake may be
        # pending) as not up but suspected: that is connecting, not down.
        return "connecting" if path.suspected else "down"
    return "suspect" if path.suspected else "up"


def find_path(snapshot: EngineSnapshot, name: str | None) -> PathSnapshot | None:
    return next((p for p in snapshot.paths if p.name == name), None)


def active_path(snapshot: EngineSnapshot) -> PathSnapshot | None:
    """The path that carries ordinary traffic: the best of `default`, else of the
    most important class that has one."""
    for cls in ("default", *CLASSES):
        carriers = snapshot.classes.get(cls, ())
        if carriers:
            return find_path(snapshot, carriers[0])
    return None


def _ordered_classes(snapshot: EngineSnapshot) -> list[str]:
    return [c for c in (*CLASSES, *sorted(set(snapshot.classes) - set(CLASSES)))
            if c in snapshot.classes]


def class_carriers(snapshot: EngineSnapshot, cls: str) -> str:
    carriers = snapshot.classes.get(cls, ())
    if carriers:
        return ", ".join(carriers)
    # While connecting a class without a path is still being placed (its traffic is
    # held meanwhile, not leaked); afterwards it is blocked.
    return "waiting" if snapshot.state is ConnState.CONNECTING else BLOCKED_CLASS


def class_lines(snapshot: EngineSnapshot) -> list[str]:
    """One line per traffic class the engine steers: the paths carrying it, best first."""
    return [f"{cls}: {class_carriers(snapshot, cls)}" for cls in _ordered_classes(snapshot)]


def copies_line(snapshot: EngineSnapshot, short: bool = False) -> str | None:
    """Realtime copies (docs/multipath.md): on which paths and why, or why not. None when
    there is nothing to say (not connected, or an engine that makes no copies: no
    realtime class). ``short``: for the menu, one line without the trigger, and an off
    reason cut to its first clause ("separate exits", not the whole explanation)."""
    reason = snapshot.copies_reason
    if reason is None or snapshot.state in (ConnState.DISCONNECTED, ConnState.CONNECTING):
        return None
    rt = snapshot.classes.get("realtime") or ()
    if snapshot.copies:
        head = f"realtime copied onto {', '.join(snapshot.copies)}"
        if rt:
            head = f"realtime on {rt[0]}, copied onto {', '.join(snapshot.copies)}"
        return head if short else f"{head}: {reason}"
    if not reason.startswith("off"):
        # On, the kernel not holding it yet (the plan is on its way).
        return "realtime copies: coming on" if short else f"realtime copies coming on: {reason}"
    text = f"realtime copies {reason}"
    return text.split(",")[0] if short else text


def headline(snapshot: EngineSnapshot) -> str:
    label = STATE_LABELS[snapshot.state]
    return f"{label} · {snapshot.profile}" if snapshot.profile else label


def tooltip(snapshot: EngineSnapshot) -> str:
    """Tray tooltip: state, and the active path with its RTT and loss."""
    lines = [f"Braid — {headline(snapshot)}"]
    if snapshot.error is not None and snapshot.state in (ConnState.ERROR, ConnState.BLOCKED):
        lines.append(snapshot.error.what)
    if snapshot.state is ConnState.BLOCKED:
        lines.append("Traffic is blocked: connect to resume, or disconnect to unblock")
    path = active_path(snapshot)
    if path is not None:
        rtt = path.rtt_smoothed_ms if path.rtt_smoothed_ms is not None else path.rtt_ms
        lines.append(f"via {path.name}: RTT {fmt_ms(rtt)}, loss {fmt_pct(path.loss)}")
    elif snapshot.state in (ConnState.CONNECTED, ConnState.DEGRADED, ConnState.FAILING_OVER):
        lines.append("no path carries traffic: blocked")
    return "\n".join(lines)


TABLE_COLUMNS: tuple[str, ...] = (
    "Path", "State", "RTT", "RTT p95", "Jitter", "Loss", "Score", "Handshake", "Carries",
)


def path_row(path: PathSnapshot) -> tuple[str, ...]:
    """The path's current figures, in TABLE_COLUMNS order."""
    handshake = "–" if path.handshake_age_s is None else f"{path.handshake_age_s:.0f} s ago"
    rtt = path.rtt_smoothed_ms if path.rtt_smoothed_ms is not None else path.rtt_ms
    # A dead path's last delay figures are history, not its state: show none.
    alive = path.up
    return (
        path.name,
        path_status(path),
        fmt_ms(rtt if alive else None),
        fmt_ms(path.rtt_p95_ms if alive else None),
        fmt_ms(path.jitter_ms if alive else None),
        fmt_pct(path.loss),
        f"{path.score:.2f}",
        handshake,
        ", ".join(path.classes) or "–",
    )


class EventTracker:
    """Picks out the events a snapshot carries that the UI has not acted on yet, by
    their sequence number. Events from before the UI started (an engine that was
    already running) are history, not news; a new engine run starts its numbers again."""

    def __init__(self, since: float) -> None:
        self._since = since
        self._last_seq = 0
        self._run: tuple[int | None, str | None] | None = None

    def new_events(self, snapshot: EngineSnapshot) -> list[Event]:
        run = (snapshot.pid, snapshot.profile)
        if run != self._run and snapshot.events:
            self._run, self._last_seq = run, 0
        fresh = [e for e in snapshot.events if e.seq > self._last_seq and e.t >= self._since]
        if snapshot.events:
            self._last_seq = max(self._last_seq, snapshot.events[-1].seq)
        return fresh


def timing(event: Event) -> str:
    parts = []
    if event.detection_ms is not None:
        parts.append(f"detected in {event.detection_ms:.0f} ms")
    if event.switch_ms is not None:
        parts.append(f"switched in {event.switch_ms:.1f} ms")
    return f" ({', '.join(parts)})" if parts else ""


def _down_cause(snapshot: EngineSnapshot, name: str | None, before: float) -> str | None:
    """Why the engine declared `name` down (its path_down event's reason), if it still
    repeats that event: a failover's own reason only says that the path is down."""
    downs = [e for e in snapshot.events
             if e.kind is EventKind.PATH_DOWN and e.from_path == name and e.t <= before + 1.0]
    return downs[-1].reason if downs else None


def _with_cause(text: str, snapshot: EngineSnapshot, name: str | None, t: float) -> str:
    cause = _down_cause(snapshot, name, t)
    return f"{text}\n{cause}" if cause and cause not in text else text


def notices(events: Sequence[Event], snapshot: EngineSnapshot) -> list[Notice]:
    """Desktop notifications for new events, each titled by what happened and with the
    engine's reason (and, for a lost path, why it was declared down). Moves of several
    classes between the same paths make one notice, and so do several classes losing
    their last path at once. The first placement on connecting is not news."""
    out: list[Notice] = []
    lost = [e for e in events if e.kind is EventKind.BLOCKED]
    if lost:
        first = lost[0]
        classes = ", ".join(sorted({e.cls for e in lost if e.cls}))
        blocked = f"Traffic ({classes}) is blocked" if classes else "Traffic is blocked"
        out.append(Notice(
            "Braid: all paths lost",
            _with_cause(f"{first.reason}.", snapshot, first.from_path, first.t)
            + f"\n{blocked} rather than sent unprotected; Braid resumes by itself when a "
            "path comes back.",
            critical=True,
        ))
    moves: dict[tuple[EventKind, str | None, str | None], list[Event]] = {}
    for event in events:
        if event.kind in (EventKind.FAILOVER, EventKind.BETTER_PATH):
            moves.setdefault((event.kind, event.from_path, event.to_path), []).append(event)
        elif event.kind is EventKind.RESTORED:
            out.append(Notice("Braid: connection restored", event.reason))
        elif event.kind is EventKind.ERROR:
            out.append(Notice("Braid: error — traffic blocked", event.reason, critical=True))
        elif event.kind is EventKind.RECOVERED:
            out.append(Notice("Braid: recovered", event.reason))
    for (kind, src, dst), group in moves.items():
        first = group[0]
        classes = ", ".join(sorted({e.cls for e in group if e.cls})) or "traffic"
        if kind is EventKind.FAILOVER:
            title = f"Braid: {src} failed, traffic moved to {dst}"
        else:
            title = f"Braid: moved to {dst}, a better path than {src}"
        message = f"{classes} moved from {src} to {dst}: {first.reason}{timing(first)}"
        if kind is EventKind.FAILOVER:
            message = _with_cause(message, snapshot, src, first.t)
        out.append(Notice(title, message))
    return out


def blocked_notice(snapshot: EngineSnapshot) -> Notice:
    """No engine runs, but the kill switch a dead one left still blocks traffic."""
    what = snapshot.error.what if snapshot.error else "Braid's kill switch blocks traffic"
    fix = snapshot.error.fix if snapshot.error else ""
    return Notice("Braid: traffic is blocked", f"{what}.\n{fix.capitalize()}.".replace(
        "..", "."), critical=True)


# -- the CLI's text forms -------------------------------------------------------------

def _num(value: float | None, fmt: str = "{:.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def event_line(e: Event) -> str:
    when = time.strftime("%H:%M:%S", time.localtime(e.t))
    head = f"{when} {e.kind.value}"
    if e.cls:
        head += f" {e.cls}"
    if e.from_path or e.to_path:
        head += f" {e.from_path or '-'} -> {e.to_path or '-'}"
    return f"{head}: {e.reason}{timing(e)}"


MECHANISMS = {"resolved": "systemd-resolved", "resolvconf": "resolvconf",
              "file": "Braid's /etc/resolv.conf"}


def dns_line(snap: EngineSnapshot) -> str | None:
    """`braid status`'s DNS line: which servers answer while connected, and how they are
    set (None: not connected, so nothing to say)."""
    if snap.state in (ConnState.DISCONNECTED, ConnState.CONNECTING) and snap.dns is None:
        return None
    d = snap.dns
    if d is None:
        return "dns: the system's own (no gateway names a DNS server)"
    text = "dns: " + ", ".join(d.servers)
    if d.domains:
        text += " (search " + " ".join(d.domains) + ")"
    if d.via:
        text += f" through {d.via}"
    if d.mechanism is None:
        return text + "; being set"
    text += f"; set in {MECHANISMS.get(d.mechanism, d.mechanism)}"
    if not d.active:
        text += " (not in place: the helper puts it back)"
    if d.blocked_queries:
        text += f"; {d.blocked_queries} queries to other resolvers blocked"
    return text


def profile_dns_text(servers: Sequence[str], domains: Sequence[str],
                     split: Sequence[tuple[str, Sequence[str], Sequence[str]]]) -> str:
    """`braid profile show`'s DNS line: what connecting applies (plan.profile_dns)."""
    if not servers and not split:
        return "the system's own (no gateway names a DNS server)"
    parts = []
    if servers:
        parts.append(", ".join(servers) + (" (search " + " ".join(domains) + ")"
                                           if domains else "") + " for every name")
    for gw, gw_servers, gw_domains in split:
        parts.append(f"{', '.join(gw_servers)} for {' '.join(gw_domains) or 'nothing'} "
                     f"(split gateway {gw})")
    return "; ".join(parts)


def status_text(snap: EngineSnapshot, events: int = 8) -> str:
    """`braid status`: a headline, a table of paths, the recent events."""
    classes = ", ".join(f"{c} -> {class_carriers(snap, c)}" for c in _ordered_classes(snap))
    who = f" {snap.profile}" if snap.profile else ""
    lines = [f"braid{who}: {STATE_LABELS[snap.state].lower().rstrip('…')}"
             + (f" ({classes})" if classes else "")]
    if snap.runner and snap.pid:
        lines[0] += f"  [{snap.runner}, pid {snap.pid}]"
    if snap.error is not None:
        lines.append(f"error: {snap.error.what}")
        if snap.error.fix:
            lines.append(f"  what to do: {snap.error.fix}")
    rows: list[Sequence[str]] = [("PATH", "STATE", "RTT", "P95", "JITTER", "LOSS", "SCORE",
                                  "COST", "HS AGE", "RX kb/s", "TX kb/s", "CLASSES", "NOTE")]
    for p in snap.paths:
        rows.append((p.name, path_status(p), _num(p.rtt_smoothed_ms), _num(p.rtt_p95_ms),
                     _num(p.jitter_ms), f"{p.loss * 100:.1f}%", f"{p.score:.2f}",
                     f"{p.cost:g}", _num(p.handshake_age_s, "{:.0f}s"),
                     f"{p.rx_bps / 1000:.0f}", f"{p.tx_bps / 1000:.0f}",
                     ",".join(p.classes) or "-", p.note or ""))
    if snap.paths:
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                  for r in rows]
    dns = dns_line(snap)
    if dns is not None:
        lines.append(dns)
    copies = copies_line(snap)
    if copies is not None:
        lines.append(copies)
    recent = snap.events[-events:] if events else ()
    if recent:
        lines.append("events:")
        lines += ["  " + event_line(e) for e in recent]
    return "\n".join(lines)
