from __future__ import annotations

import dataclasses
import time

from app.core import present
from app.core.errors import BraidError
from app.core.model import ConnState, EngineSnapshot, ErrorInfo, EventKind
from tests.ui.snapshots import event, path, snap, switch, three_paths


def test_tooltip_names_the_active_path_with_rtt_and_loss() -> None:
    s = three_paths("tk")
    text = present.tooltip(s)
    assert text.splitlines()[0] == "Braid — Connected · lab-t1"
    assert "via tk: RTT 80 ms, loss 0.0 %" in text


def test_tooltip_of_an_error_says_what_went_wrong_without_the_fix() -> None:
    err = ErrorInfo("braid-helper is not running", "start it with `braid-helper`")
    text = present.tooltip(snap(ConnState.ERROR, error=err, profile=None))
    assert text == "Braid — Error\nbraid-helper is not running"


def test_tooltip_when_connected_but_nothing_carries_traffic() -> None:
    s = snap(ConnState.DEGRADED, paths=(path("hk", None, up=False),), classes={"default": ()})
    assert present.tooltip(s).endswith("no path carries traffic: blocked")


def test_class_lines_in_importance_order_with_blocked_classes() -> None:
    s = snap(classes={"default": ("hk",), "realtime": ("tk", "hk"), "bulk": ()})
    assert present.class_lines(s) == ["realtime: tk, hk", "bulk: blocked: no path",
                                      "default: hk"]
    assert present.class_lines(snap(ConnState.CONNECTING, classes={"default": ()})) == [
        "default: waiting"]


def test_path_row_formats_every_column() -> None:
    row = present.path_row(path("hk", 182.4, loss=0.0123, score=0.5, classes=("default",)))
    assert dict(zip(present.TABLE_COLUMNS, row, strict=True)) == {
        "Path": "hk", "State": "up", "RTT": "182 ms", "RTT p95": "219 ms", "Jitter": "2.0 ms",
        "Loss": "1.2 %", "Score": "0.50", "Handshake": "5 s ago", "Carries": "default",
    }
    down = present.path_row(path("tk", None, up=False, jitter=None))
    assert down[1:5] == ("down", "–", "–", "–")


def test_user_message_keeps_what_and_fix_apart() -> None:
    err = BraidError("the keyring is locked", "unlock it and connect again")
    assert present.UserMessage.from_error(err) == present.UserMessage(
        "the keyring is locked", "unlock it and connect again")
    assert present.UserMessage.from_info(ErrorInfo.of(err)) == present.UserMessage(
        "the keyring is locked", "unlock it and connect again")
    msg = present.UserMessage.from_error(ValueError("boom"))
    assert msg.what == "ValueError: boom" and "report" in msg.fix


def test_event_tracker_reports_each_event_once_and_ignores_older_history() -> None:
    start = time.time()
    tracker = present.EventTracker(since=start)
    old = switch("hk", "tk", t=start - 60)
    new = switch("tk", "sg", t=start + 1)
    assert tracker.new_events(snap(events=(old,))) == []
    assert tracker.new_events(snap(events=(old, new))) == [new]
    assert tracker.new_events(snap(events=(old, new))) == []
    newer = switch("sg", "hk", t=start + 2)
    assert tracker.new_events(snap(events=(new, newer))) == [newer]
    # Two events in the same instant are two events (they used to be told apart by time).
    a, b = switch("hk", "tk", t=start + 3), switch("hk", "tk", t=start + 3, cls="bulk")
    assert tracker.new_events(snap(events=(newer, a, b))) == [a, b]
    # A new engine run numbers its events from 1 again.
    again = dataclasses.replace(switch("hk", "sg", t=start + 4), seq=1)
    assert tracker.new_events(snap(events=(again,), pid=99)) == [again]


def test_failover_notice_when_the_path_left_is_down() -> None:
    s = snap(paths=(path("hk", None, up=False), path("tk")), classes={"default": ("tk",)})
    notes = present.notices([switch("hk", "tk", cls="default"),
                             switch("hk", "tk", cls="realtime")], s)
    assert len(notes) == 1
    assert notes[0].title == "Braid: hk failed, traffic moved to tk"
    assert notes[0].message == (
        "default, realtime moved from hk to tk: hk declared down: no reply to 3 probes "
        "(detected in 180 ms, switched in 2.5 ms)")


def test_failover_notice_says_why_the_path_was_declared_down() -> None:
    down = event(EventKind.PATH_DOWN, "hk: no answer to 3 probes in a row",
                 t=time.time() - 0.2, frm="hk")
    s = snap(paths=(path("hk", None, up=False), path("tk")), classes={"default": ("tk",)},
             events=(down,))
    (note,) = present.notices([switch("hk", "tk")], s)
    assert note.message.splitlines() == [
        "default moved from hk to tk: hk declared down: no reply to 3 probes "
        "(detected in 180 ms, switched in 2.5 ms)",
        "hk: no answer to 3 probes in a row",
    ]
    # A path-quality switch away from a live path has no such cause.
    better = switch("hk", "tk", kind=EventKind.BETTER_PATH)
    (plain,) = present.notices([better], snap(paths=(path("hk"), path("tk")), events=(down,)))
    assert "no answer" not in plain.message


def test_every_class_losing_its_last_path_is_one_notice_with_the_cause() -> None:
    down = event(EventKind.PATH_DOWN, "tk: no answer to 3 probes in a row", t=0.5, frm="tk")
    lost = [event(EventKind.BLOCKED, "tk declared down; no other path is up", t=1.0, cls=c,
                  frm="tk") for c in ("realtime", "default")]
    (note,) = present.notices(lost, snap(paths=(path("tk", None, up=False),), events=(down,)))
    assert note.title == "Braid: all paths lost" and note.critical
    assert note.message.splitlines()[:2] == [
        "tk declared down; no other path is up.", "tk: no answer to 3 probes in a row"]
    assert "Traffic (default, realtime) is blocked" in note.message


def test_plain_switch_and_all_paths_lost_notices() -> None:
    s = three_paths("tk")
    lost = event(EventKind.BLOCKED, "every path is down", t=1.0, cls="default", frm="tk")
    better = switch("hk", "tk", kind=EventKind.BETTER_PATH)
    notes = present.notices([better, lost], s)
    assert [n.title for n in notes] == ["Braid: all paths lost",
                                        "Braid: moved to tk, a better path than hk"]
    assert notes[0].critical and "every path is down" in notes[0].message
    assert present.notices([event(EventKind.PATH_UP, "answers again", to="hk")], s) == []


def test_first_placement_on_connecting_is_no_news() -> None:
    first = event(EventKind.PLACED, "connected: initial placement", t=1.0, cls="default",
                  to="hk")
    assert present.notices([first], three_paths("hk")) == []


def test_a_dead_path_shows_no_stale_delay() -> None:
    row = present.path_row(path("hk", 44.0, up=False, loss=0.2))
    assert row[1:6] == ("down", "–", "–", "–", "20.0 %")


def test_a_path_not_answered_yet_reads_connecting_not_down() -> None:
    """The engine reports a path whose first handshake may still be pending as not up
    but suspected; the table must not call it down."""
    pending = dataclasses.replace(path("us", None, up=False), suspected=True)
    assert present.path_status(pending) == "connecting"
    assert present.path_status(path("us", None, up=False)) == "down"


def cli_snapshot() -> EngineSnapshot:
    up = path("hk", 31.0, loss=0.01, score=0.93, classes=("default",), jitter=0.4)
    down = dataclasses.replace(path("tyo", None, up=False, jitter=None), cost=2.0,
                               note="down")
    ev = dataclasses.replace(switch("tyo", "hk", t=0.0), reason="failover: tyo declared down",
                             detection_ms=171.2, switch_ms=60.4)
    return dataclasses.replace(snap(ConnState.DEGRADED, paths=(up, down),
                                    classes={"default": ("hk",)}, events=(ev,), pid=None),
                               profile="work")


def test_status_text_shows_paths_classes_and_events() -> None:
    text = present.status_text(cli_snapshot())
    lines = text.splitlines()
    assert lines[0] == "braid work: degraded (default -> hk)"
    assert lines[1].split()[:3] == ["PATH", "STATE", "RTT"]
    assert lines[2].split()[:9] == ["hk", "up", "31.0", "37.2", "0.4", "1.0%", "0.93", "1",
                                    "5s"]
    assert lines[3].split()[:3] == ["tyo", "down", "-"] and lines[3].endswith("down")
    pending = cli_snapshot()
    pending = dataclasses.replace(pending, paths=(
        pending.paths[0], dataclasses.replace(pending.paths[1], suspected=True)))
    assert present.status_text(pending).splitlines()[3].split()[:2] == ["tyo", "connecting"]
    assert "failover: tyo declared down (detected in 171 ms, switched in 60.4 ms)" in text


def test_status_text_of_a_blocked_class_and_nothing_running() -> None:
    blocked = dataclasses.replace(cli_snapshot(), classes={"default": ()})
    assert "default -> blocked: no path" in present.status_text(blocked)
    waiting = dataclasses.replace(blocked, state=ConnState.CONNECTING)
    assert present.status_text(waiting).splitlines()[0] == (
        "braid work: connecting (default -> waiting)")
    idle = snap(ConnState.DISCONNECTED, profile=None, pid=None)
    assert present.status_text(idle) == "braid: disconnected"


def test_event_line_without_paths_or_times() -> None:
    ev = event(EventKind.ERROR, "the helper refused the plan", t=0.0)
    assert present.event_line(ev).endswith("error: the helper refused the plan")


def test_snapshot_json_round_trip_carries_every_field() -> None:
    s = dataclasses.replace(cli_snapshot(), error=ErrorInfo("boom", "do this"), runner="x")
    assert EngineSnapshot.from_json(s.to_json()) == s


def test_status_says_which_dns_is_applied_and_how() -> None:
    from app.core.model import DnsSnapshot

    base = three_paths()
    assert "dns: the system's own (no gateway names a DNS server)" in present.status_text(base)
    assert present.dns_line(snap(ConnState.DISCONNECTED)) is None
    dns = DnsSnapshot(("10.64.0.1",), ("corp.example",), "br-hk")
    assert present.dns_line(dataclasses.replace(base, dns=dns)) == (
        "dns: 10.64.0.1 (search corp.example) through br-hk; being set")
    applied = dataclasses.replace(dns, mechanism="file", active=True, blocked_queries=3)
    assert present.dns_line(dataclasses.replace(base, dns=applied)) == (
        "dns: 10.64.0.1 (search corp.example) through br-hk; set in Braid's "
        "/etc/resolv.conf; 3 queries to other resolvers blocked")
    lost = dataclasses.replace(applied, mechanism="resolved", active=False, blocked_queries=0)
    assert present.dns_line(dataclasses.replace(base, dns=lost)) == (
        "dns: 10.64.0.1 (search corp.example) through br-hk; set in systemd-resolved (not in "
        "place: the helper puts it back)")
    # The snapshot's wire form carries it (the tray app and `braid status` read it).
    again = EngineSnapshot.from_json(dataclasses.replace(base, dns=applied).to_json())
    assert again.dns == applied


def test_copies_say_on_which_paths_and_why_or_why_not() -> None:
    base = dataclasses.replace(three_paths(), classes={"realtime": ("hk",), "default": ("hk",)})
    on = dataclasses.replace(base, copies=("tk",), copies_reason="hk loses 3.0 %")
    assert present.copies_line(on) == "realtime on hk, copied onto tk: hk loses 3.0 %"
    assert present.copies_line(on, short=True) == "realtime on hk, copied onto tk"
    assert "realtime on hk, copied onto tk: hk loses 3.0 %" in present.status_text(on)
    separate = dataclasses.replace(base, copies_reason=(
        "off: the gateways have separate exits, so a copy would reach the far end from "
        "another address"))
    assert present.copies_line(separate) == (
        "realtime copies off: the gateways have separate exits, so a copy would reach the "
        "far end from another address")
    assert present.copies_line(separate, short=True) == \
        "realtime copies off: the gateways have separate exits"
    clean = dataclasses.replace(base, copies_reason="off: realtime's path is clean")
    assert present.copies_line(clean) == "realtime copies off: realtime's path is clean"
    # Decided on, the helper not holding it yet.
    coming = dataclasses.replace(base, copies_reason="a path failed 0 s ago")
    assert present.copies_line(coming, short=True) == "realtime copies: coming on"
    # Nothing to say: an engine without copies, or not connected.
    assert present.copies_line(base) is None
    assert "copies" not in present.status_text(base)
    assert present.copies_line(dataclasses.replace(on, state=ConnState.DISCONNECTED)) is None
