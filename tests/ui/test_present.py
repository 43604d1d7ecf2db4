from __future__ import annotations

import dataclasses
import time

from app.core.errors import BraidError
from app.core.model import ConnState, Event
from app.ui import present
from tests.ui.snapshots import path, snap, switch, three_paths


def test_tooltip_names_the_active_path_with_rtt_and_loss() -> None:
    s = three_paths("tk")
    text = present.tooltip(s)
    assert text.splitlines()[0] == "Braid — Connected · lab-t1"
    assert "via tk: RTT 80 ms, loss 0.0 %" in text


def test_tooltip_of_an_error_says_what_went_wrong_without_the_fix() -> None:
    err = str(BraidError("braid-helper is not running", "start it with `braid-helper`"))
    text = present.tooltip(snap(ConnState.ERROR, error=err, profile=None))
    assert text == "Braid — Error\nbraid-helper is not running"


def test_tooltip_when_connected_but_nothing_carries_traffic() -> None:
    s = snap(ConnState.DEGRADED, paths=(path("hk", None, up=False),), classes={"default": ()})
    assert present.tooltip(s).endswith("no path carries traffic")


def test_class_lines_in_importance_order_with_blocked_classes() -> None:
    s = snap(classes={"default": ("hk",), "realtime": ("tk", "hk"), "bulk": ()})
    assert present.class_lines(s) == ["realtime: tk, hk", "bulk: blocked, no path",
                                      "default: hk"]


def test_path_row_formats_every_column() -> None:
    row = present.path_row(path("hk", 182.4, loss=0.0123, score=0.5, classes=("default",)))
    assert dict(zip(present.TABLE_COLUMNS, row, strict=True)) == {
        "Path": "hk", "State": "up", "RTT": "182 ms", "RTT p95": "219 ms", "Jitter": "2.0 ms",
        "Loss": "1.2 %", "Score": "0.50", "Handshake": "5 s ago", "Carries": "default",
    }
    down = present.path_row(path("tk", None, up=False, jitter=None))
    assert down[1:5] == ("down", "–", "–", "–")


def test_user_message_splits_a_braid_error_text() -> None:
    text = str(BraidError("the keyring is locked", "unlock it and connect again"))
    assert present.UserMessage.from_text(text) == present.UserMessage(
        "the keyring is locked", "unlock it and connect again")
    assert present.UserMessage.from_text("plain") == present.UserMessage("plain", "")
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


def test_failover_notice_when_the_path_left_is_down() -> None:
    s = snap(paths=(path("hk", None, up=False), path("tk")), classes={"default": ("tk",)})
    notes = present.notices([switch("hk", "tk", cls="default"),
                             switch("hk", "tk", cls="realtime")], s)
    assert len(notes) == 1
    assert notes[0].title == "Braid: failed over to tk"
    assert notes[0].message == (
        "default, realtime moved from hk to tk: hk declared down: no reply to 3 probes "
        "(detected in 180 ms, switched in 2.5 ms)")


def test_failover_notice_says_why_the_path_was_declared_down() -> None:
    down = Event(t=time.time() - 0.2, kind="down", cls=None, from_path="hk", to_path=None,
                 reason="hk: no answer to 3 probes in a row")
    s = snap(paths=(path("hk", None, up=False), path("tk")), classes={"default": ("tk",)},
             events=(down,))
    (note,) = present.notices([switch("hk", "tk")], s)
    assert note.message.splitlines() == [
        "default moved from hk to tk: hk declared down: no reply to 3 probes "
        "(detected in 180 ms, switched in 2.5 ms)",
        "hk: no answer to 3 probes in a row",
    ]
    # A path-quality switch away from a live path has no such cause.
    (plain,) = present.notices([switch("hk", "tk")], snap(paths=(path("hk"), path("tk")),
                                                           events=(down,)))
    assert "no answer" not in plain.message


def test_every_class_losing_its_last_path_is_one_notice_with_the_cause() -> None:
    down = Event(t=0.5, kind="down", cls=None, from_path="tk", to_path=None,
                 reason="tk: no answer to 3 probes in a row")
    lost = [Event(t=1.0, kind="fail_closed", cls=c, from_path="tk", to_path=None,
                  reason="tk declared down; no other path is up") for c in ("realtime", "default")]
    (note,) = present.notices(lost, snap(paths=(path("tk", None, up=False),), events=(down,)))
    assert note.title == "Braid: all paths lost" and note.critical
    assert note.message.splitlines()[:2] == [
        "tk declared down; no other path is up.", "tk: no answer to 3 probes in a row"]
    assert "Traffic (default, realtime) is blocked" in note.message


def test_plain_switch_and_all_paths_lost_notices() -> None:
    s = three_paths("tk")
    lost = Event(t=1.0, kind="fail_closed", cls="default", from_path="tk", to_path=None,
                 reason="every path is down")
    notes = present.notices([switch("hk", "tk"), lost], s)
    assert [n.title for n in notes] == ["Braid: all paths lost", "Braid: switched to tk"]
    assert notes[0].critical and "every path is down" in notes[0].message
    assert present.notices([Event(1.0, "up", None, None, "hk", "answers again")], s) == []


def test_first_placement_on_connecting_is_no_news() -> None:
    first = Event(t=1.0, kind="switch", cls="default", from_path=None, to_path="hk",
                  reason="initial placement")
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
