"""The connection's state machine (app/core/connection.py), driven with explicit times."""

from __future__ import annotations

import pytest

from app.core.connection import Connection, InvalidTransition
from app.core.model import ConnState, ErrorInfo

S = ConnState


def connected() -> Connection:
    c = Connection()
    c.start(0.0)
    c.settled(1.0, degraded=False)
    return c


def test_a_connection_lives_through_connecting_connected_and_back() -> None:
    c = Connection()
    t = c.start(0.0)
    assert t is not None and (t.old, t.new) == (S.DISCONNECTED, S.CONNECTING)
    assert c.settled(1.0, degraded=True) is not None and c.state is S.DEGRADED
    assert c.health(2.0, degraded=False) is not None and c.state is S.CONNECTED
    assert c.health(3.0, degraded=False) is None  # no change, no transition
    assert c.stop(4.0) is not None and c.state is S.DISCONNECTING
    assert c.stopped(5.0) is not None and c.state is S.DISCONNECTED


def test_failing_over_is_a_state_of_its_own_until_the_engine_says_it_is_done() -> None:
    c = connected()
    assert c.failover_started(2.0) is not None and c.state is S.FAILING_OVER
    assert c.failover_started(2.1) is None  # a second class failing over at once
    assert c.health(2.2, degraded=True) is None  # health does not end a failover
    t = c.failover_done(2.6, degraded=True)  # once, for both: the engine counts
    assert t is not None and c.state is S.DEGRADED
    assert c.failover_done(2.7, degraded=False) is None and c.state is S.DEGRADED


def test_an_error_keeps_the_state_until_the_cause_clears_or_the_user_stops() -> None:
    c = connected()
    err = ErrorInfo("braid-helper went away", "it restarts by itself")
    assert c.fail(2.0, err) is not None and c.state is S.ERROR and c.error == err
    assert c.health(3.0, degraded=False) is None and c.state is S.ERROR
    assert c.failover_started(3.1) is None and c.state is S.ERROR
    assert c.fail(3.2, ErrorInfo("still gone")) is None and c.error == ErrorInfo("still gone")
    assert c.recover(4.0) is not None and c.state is S.CONNECTING and c.error is None
    assert c.settled(4.1, degraded=False) is not None and c.state is S.CONNECTED
    c.fail(5.0, err)
    assert c.stop(6.0) is not None and c.state is S.DISCONNECTING


def test_transitions_the_table_does_not_allow_are_bugs() -> None:
    c = Connection()
    with pytest.raises(InvalidTransition):
        c.stopped(0.0)
    c.start(0.0)
    with pytest.raises(InvalidTransition):
        c.start(0.1)
    assert c.fail(0.2, ErrorInfo("x")) is not None
    assert Connection().fail(0.0, ErrorInfo("x")) is None  # nothing to fail when idle
