"""Words and numbers the UI shows, from snapshots. Pure functions, no Qt, so the
wording is tested once and the tray, the main window and the graph window agree."""

from __future__ import annotations

from dataclasses import dataclass

from app.core.errors import BraidError
from app.core.model import CLASSES, ConnState, EngineSnapshot, Event, PathSnapshot

STATE_LABELS: dict[ConnState, str] = {
    ConnState.DISCONNECTED: "Disconnected",
    ConnState.CONNECTING: "Connecting…",
    ConnState.CONNECTED: "Connected",
    ConnState.DEGRADED: "Degraded",
    ConnState.FAILING_OVER: "Failing over",
    ConnState.ERROR: "Error",
}

# str(BraidError) joins its two halves with this; the UI shows them apart.
_FIX_SEPARATOR = "\n  what to do: "


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
    def from_text(cls, text: str) -> UserMessage:
        what, _, fix = text.partition(_FIX_SEPARATOR)
        return cls(what.strip(), fix.strip())


_REPORT_FIX = "this is a bug in Braid; run `braid -v` from a terminal and report what it prints"


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
    return "suspected" if path.suspected else "up"


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


def class_lines(snapshot: EngineSnapshot) -> list[str]:
    """One line per traffic class the engine steers: the paths carrying it, best first."""
    lines = []
    for cls in (*CLASSES, *sorted(set(snapshot.classes) - set(CLASSES))):
        if cls not in snapshot.classes:
            continue
        carriers = snapshot.classes[cls]
        lines.append(f"{cls}: {', '.join(carriers)}" if carriers else f"{cls}: blocked, no path")
    return lines


def headline(snapshot: EngineSnapshot) -> str:
    label = STATE_LABELS[snapshot.state]
    return f"{label} · {snapshot.profile}" if snapshot.profile else label


def tooltip(snapshot: EngineSnapshot) -> str:
    """Tray tooltip: state, and the active path with its RTT and loss."""
    lines = [f"Braid — {headline(snapshot)}"]
    if snapshot.state is ConnState.ERROR and snapshot.error:
        lines.append(UserMessage.from_text(snapshot.error).what)
    path = active_path(snapshot)
    if path is not None:
        rtt = path.rtt_smoothed_ms if path.rtt_smoothed_ms is not None else path.rtt_ms
        lines.append(f"via {path.name}: RTT {fmt_ms(rtt)}, loss {fmt_pct(path.loss)}")
    elif snapshot.state in (ConnState.CONNECTED, ConnState.DEGRADED, ConnState.FAILING_OVER):
        lines.append("no path carries traffic")
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


EventKey = tuple[float, str, str | None, str | None, str | None]


def _key(event: Event) -> EventKey:
    return (event.t, event.kind, event.cls, event.from_path, event.to_path)


class EventTracker:
    """Picks out the events a snapshot carries that the UI has not acted on yet.

    Snapshots repeat a bounded tail of recent events, so each is recognised by its
    identity; events from before the UI started (an engine that was already running)
    are history, not news.
    """

    def __init__(self, since: float) -> None:
        self._since = since
        self._seen: set[EventKey] = set()

    def new_events(self, snapshot: EngineSnapshot) -> list[Event]:
        fresh = [
            e for e in snapshot.events if e.t >= self._since and _key(e) not in self._seen
        ]
        if snapshot.events:
            # Forget what the engine no longer repeats, so the set stays bounded.
            oldest = min(e.t for e in snapshot.events)
            self._seen = {k for k in self._seen if k[0] >= oldest}
        self._seen.update(_key(e) for e in fresh)
        return fresh


def _timing(event: Event) -> str:
    parts = []
    if event.detection_ms is not None:
        parts.append(f"detected in {event.detection_ms:.0f} ms")
    if event.switch_ms is not None:
        parts.append(f"switched in {event.switch_ms:.1f} ms")
    return f" ({', '.join(parts)})" if parts else ""


def _down_cause(snapshot: EngineSnapshot, name: str | None, before: float) -> str | None:
    """Why the engine declared `name` down (its "down" event's reason), if it still
    repeats that event: a failover's own reason only says that the path is down."""
    downs = [e for e in snapshot.events
             if e.kind == "down" and e.from_path == name and e.t <= before + 1.0]
    return downs[-1].reason if downs else None


def _with_cause(text: str, snapshot: EngineSnapshot, name: str | None, t: float) -> str:
    cause = _down_cause(snapshot, name, t)
    return f"{text}\n{cause}" if cause and cause not in text else text


def notices(events: list[Event], snapshot: EngineSnapshot) -> list[Notice]:
    """Desktop notifications for new events: failovers, all paths lost, recovery,
    errors, each with the engine's reason (and, for a lost path, why it was declared
    down). Switches of several classes between the same paths make one notice, and so
    do several classes losing their last path at once."""
    out: list[Notice] = []
    switches: dict[tuple[str | None, str | None], list[Event]] = {}
    lost = [e for e in events if e.kind == "fail_closed"]
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
    for event in events:
        if event.kind == "switch" and event.from_path is not None:
            # (A switch from nowhere is the first placement on connecting: not news.)
            switches.setdefault((event.from_path, event.to_path), []).append(event)
        elif event.kind == "restored":
            out.append(Notice("Braid: connection restored", event.reason))
        elif event.kind == "error":
            out.append(Notice("Braid: error", event.reason, critical=True))
    for (src, dst), group in switches.items():
        first = group[0]
        left = find_path(snapshot, src)
        forced = left is None or not left.up
        classes = ", ".join(sorted({e.cls for e in group if e.cls})) or "traffic"
        title = f"Braid: failed over to {dst}" if forced else f"Braid: switched to {dst}"
        message = f"{classes} moved from {src} to {dst}: {first.reason}{_timing(first)}"
        if forced:
            message = _with_cause(message, snapshot, src, first.t)
        out.append(Notice(title, message))
    return out
