from __future__ import annotations

import threading

from pytestqt.qtbot import QtBot

from app.core import present
from app.core.errors import BraidError
from app.core.model import ConnState, EngineSnapshot, ErrorInfo
from app.core.present import Notice, UserMessage
from app.ui.controller import AppController
from tests.ui.snapshots import EngineBox, Target, path, snap, switch, three_paths


def test_snapshots_from_the_engine_thread_arrive_on_the_ui_thread(qtbot: QtBot) -> None:
    box = EngineBox()
    c = AppController(box)
    seen: list[tuple[EngineSnapshot, threading.Thread]] = []
    c.snapshot_changed.connect(lambda s: seen.append((s, threading.current_thread())))
    last = three_paths("sg")

    def engine_thread() -> None:
        for _ in range(50):
            box.e.sink(three_paths())
        box.e.sink(last)

    feeder = threading.Thread(target=engine_thread)
    feeder.start()
    feeder.join()
    qtbot.waitUntil(lambda: c.latest is last)
    assert all(th is threading.main_thread() for _, th in seen)
    # Coalesced: a burst costs at most a few redraws, and the newest always arrives.
    assert c.snapshots_received == 51
    assert 1 <= c.snapshots_shown <= 51 and seen[-1][0] is last


def test_error_state_raises_one_dialog_per_error(qtbot: QtBot) -> None:
    c = AppController(EngineBox())
    errors: list[UserMessage] = []
    c.error.connect(errors.append)
    text = ErrorInfo.of(BraidError("braid-helper is not running: no socket at /run/x",
                          "start it: sudo braid-helper"))
    c.apply(snap(ConnState.CONNECTING))
    c.apply(snap(ConnState.ERROR, error=text))
    c.apply(snap(ConnState.ERROR, error=text))
    assert errors == [UserMessage("braid-helper is not running: no socket at /run/x",
                                  "start it: sudo braid-helper")]


def test_new_failover_event_raises_one_notice(qtbot: QtBot) -> None:
    c = AppController(EngineBox())
    notices: list[Notice] = []
    c.notice.connect(notices.append)
    ev = switch("hk", "tk")
    after = snap(paths=(path("hk", None, up=False), path("tk")), classes={"default": ("tk",)},
                 events=(ev,))
    c.apply(three_paths())
    c.apply(after)
    c.apply(after)
    assert [n.title for n in notices] == ["Braid: hk failed, traffic moved to tk"]


def test_commands_go_to_the_engine(qtbot: QtBot) -> None:
    box = EngineBox()
    c = AppController(box)
    office = Target("office")
    c.request_connect(office)
    c.apply(three_paths())
    c.request_connect(Target("lab-t1", "t1"))  # switching profile: disconnect first
    c.request_disconnect()
    c.shutdown(3.0)
    c.shutdown(3.0)
    assert box.e.calls == [("connect", office), ("disconnect", None),
                           ("connect", Target("lab-t1", "t1")), ("disconnect", None),
                           ("shutdown", 3.0)]


def test_a_failing_target_list_becomes_a_dialog(qtbot: QtBot) -> None:
    box = EngineBox()
    c = AppController(box)
    errors: list[UserMessage] = []
    c.error.connect(errors.append)
    box.e.targets_error = BraidError("cannot read profile x", "fix or delete it")
    assert c.targets() == []
    assert errors == [UserMessage("cannot read profile x", "fix or delete it")]


def test_a_kill_switch_left_holding_is_one_critical_notice(qtbot: QtBot) -> None:
    from app.core.service import BLOCKED_ERROR

    c = AppController(EngineBox())
    notices: list[Notice] = []
    c.notice.connect(notices.append)
    blocked = snap(ConnState.BLOCKED, error=BLOCKED_ERROR)
    c.apply(blocked)
    c.apply(blocked)
    assert [n.title for n in notices] == ["Braid: traffic is blocked"]
    assert notices[0].critical and "disconnect" in notices[0].message.lower()
    assert present.tooltip(blocked).splitlines()[0] == "Braid — Blocked · lab-t1"
