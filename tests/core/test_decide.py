"""The per-class decision state machine: selection, hysteresis, hold-down, failover,
fail closed and recovery."""

from __future__ import annotations

import random

import pytest

from app.core.decide import Candidate, ClassDecider, ClassState, DecideConfig
from app.core.liveness import Health

CFG = DecideConfig(margin=0.1, dwell_s=5.0, hold_down_s=15.0, warmup_s=2.0)
UP, SUSPECT, DOWN, UNKNOWN = Health.UP, Health.SUSPECT, Health.DOWN, Health.UNKNOWN


def c(name: str, score: float, health: Health = UP, up_since: float | None = -100.0,
      samples: int = 100) -> Candidate:
    return Candidate(name, health, score, score, up_since if health is not DOWN else None,
                     {"rtt_ms": 100.0}, samples)


def active_on(path: str, now: float = 0.0) -> ClassDecider:
    d = ClassDecider("default", CFG, started=now - 10)
    decision = d.step(now, [c(path, 0.9), c("other", 0.5)])
    assert decision is not None and decision.to_path == path
    return d


def test_waits_for_measurements_then_selects_the_best() -> None:
    d = ClassDecider("default", CFG, started=0.0)
    assert d.step(0.5, [c("a", 0.9), c("b", 0.0, UNKNOWN)]) is None
    decision = d.step(0.6, [c("a", 0.6), c("b", 0.8)])
    assert decision is not None and decision.kind == "select" and decision.to_path == "b"
    assert d.state is ClassState.ACTIVE and d.current == "b"


def test_waits_for_enough_samples_so_one_lucky_probe_does_not_decide() -> None:
    d = ClassDecider("default", CFG, started=0.0)
    assert d.step(0.1, [c("lossy", 1.0, samples=1), c("steady", 0.8)]) is None
    decision = d.step(0.5, [c("lossy", 0.0, samples=CFG.min_samples), c("steady", 0.8)])
    assert decision is not None and decision.to_path == "steady"


def test_warmup_timeout_selects_among_what_answered() -> None:
    d = ClassDecider("default", CFG, started=0.0)
    decision = d.step(2.0, [c("a", 0.7), c("b", 0.0, UNKNOWN)])
    assert decision is not None and decision.to_path == "a"


def test_nothing_answers_fails_closed() -> None:
    d = ClassDecider("default", CFG, started=0.0)
    decision = d.step(2.0, [c("a", 0, UNKNOWN), c("b", 0, DOWN)])
    assert decision is not None and decision.kind == "fail_closed" and decision.to_path is None
    assert d.state is ClassState.FAIL_CLOSED


def test_better_path_moves_traffic_only_after_dwell_and_margin() -> None:
    d = active_on("a", now=0.0)
    # Better, but not by the margin: never moves.
    for t in range(16, 40):
        assert d.step(float(t), [c("a", 0.7), c("b", 0.79)]) is None
    # By the margin: moves after dwell_s of continuous lead.
    assert d.step(40.0, [c("a", 0.7), c("b", 0.81)]) is None
    assert d.step(44.9, [c("a", 0.7), c("b", 0.81)]) is None
    decision = d.step(45.0, [c("a", 0.7), c("b", 0.81)])
    assert decision is not None and decision.kind == "switch"
    assert (decision.from_path, decision.to_path) == ("a", "b")
    assert decision.metrics["from_score"] == 0.7 and decision.metrics["to_score"] == 0.81
    assert "margin" in decision.reason


def test_leaving_a_path_that_scores_zero_needs_only_the_short_dwell() -> None:
    d = active_on("a", now=0.0)
    assert d.step(20.0, [c("a", 0.0), c("b", 0.6)]) is None
    decision = d.step(20.0 + CFG.unusable_dwell_s, [c("a", 0.0), c("b", 0.6)])
    assert decision is not None and decision.to_path == "b"
    # Still within the hold-down after a switch, even from a path scoring 0.
    assert d.step(22.0, [c("a", 0.9), c("b", 0.0)]) is None
    assert d.step(34.9, [c("a", 0.9), c("b", 0.0)]) is None


def test_a_lead_that_lapses_restarts_the_dwell() -> None:
    d = active_on("a")
    assert d.step(20.0, [c("a", 0.5), c("b", 0.9)]) is None
    assert d.step(24.0, [c("a", 0.5), c("b", 0.55)]) is None  # lead gone
    assert d.step(25.0, [c("a", 0.5), c("b", 0.9)]) is None
    assert d.step(29.9, [c("a", 0.5), c("b", 0.9)]) is None
    assert d.step(30.0, [c("a", 0.5), c("b", 0.9)]) is not None


def test_hold_down_after_a_switch() -> None:
    d = active_on("a", now=0.0)
    assert d.step(1.0, [c("a", 0.1), c("b", 0.9)]) is None
    assert d.step(14.9, [c("a", 0.1), c("b", 0.9)]) is None  # dwell met, hold-down not
    assert d.step(15.0, [c("a", 0.1), c("b", 0.9)]) is not None


def test_failover_is_immediate_and_prefers_healthy_paths() -> None:
    d = active_on("a")
    decision = d.step(0.5, [c("a", 0.9, DOWN), c("b", 0.95, SUSPECT), c("c", 0.3)])
    assert decision is not None and decision.kind == "failover" and decision.to_path == "c"
    assert "a declared down" in decision.reason


def test_suspect_current_path_is_not_left_early() -> None:
    d = active_on("a")
    assert d.step(0.5, [c("a", 0.9, SUSPECT), c("b", 0.9)]) is None
    assert d.current == "a"


def test_recovered_path_returns_only_after_hold_down_and_by_the_margin() -> None:
    d = active_on("a", now=0.0)
    decision = d.step(1.0, [c("a", 0.0, DOWN), c("b", 0.6)])
    assert decision is not None and decision.to_path == "b"
    # a is back at t=2 and better by far; it must be up for hold_down_s first.
    for t in (2.0, 10.0, 16.9):
        assert d.step(t, [c("a", 0.9, up_since=2.0), c("b", 0.6)]) is None
    assert d.step(17.0, [c("a", 0.9, up_since=2.0), c("b", 0.6)]) is None  # dwell starts
    decision = d.step(22.0, [c("a", 0.9, up_since=2.0), c("b", 0.6)])
    assert decision is not None and decision.to_path == "a"


def test_recovered_path_that_is_not_better_by_the_margin_gets_nothing() -> None:
    d = active_on("a", now=0.0)
    d.step(1.0, [c("a", 0.0, DOWN), c("b", 0.8)])
    for t in range(2, 100):
        assert d.step(float(t), [c("a", 0.85, up_since=2.0), c("b", 0.8)]) is None


def test_all_down_fails_closed_and_comes_back_by_itself() -> None:
    d = active_on("a")
    decision = d.step(1.0, [c("a", 0, DOWN), c("other", 0, DOWN)])
    assert decision is not None and decision.kind == "fail_closed"
    assert d.step(2.0, [c("a", 0, DOWN), c("other", 0, SUSPECT)]) is None
    decision = d.step(3.0, [c("a", 0, DOWN), c("other", 0.4, up_since=3.0)])
    assert decision is not None and decision.kind == "restored" and decision.to_path == "other"


def test_noisy_path_never_makes_it_flap() -> None:
    """A path with 8 % loss scores 0 most of the time, with short lucky spells when its
    window dips under 5 %; next to a steady path, over an hour: no move at all."""
    rng = random.Random(4)
    d = ClassDecider("default", CFG, started=0.0)
    d.step(0.0, [c("steady", 0.8), c("noisy", 0.0)])
    moves, spell, rest = 0, 0, 0
    for t in range(1, 3600):
        if spell == 0 and rest == 0 and rng.random() < 0.3:
            spell = rng.randint(1, 4)  # seconds of looking better than the steady path
        noisy = 0.95 if spell else 0.0
        if spell:
            spell -= 1
            rest = 0 if spell else 1  # a lucky spell ends with a lost probe or more
        else:
            rest = max(0, rest - 1)
        decision = d.step(float(t), [c("steady", 0.8), c("noisy", noisy)])
        moves += decision is not None and decision.kind != "select"
    assert moves == 0
    assert d.current == "steady"


def test_voluntary_moves_are_rate_limited_even_with_adversarial_scores() -> None:
    """Scores that swap every 6 s (longer than the dwell): at most one move per
    hold-down, whatever the scores do."""
    d = active_on("a", now=0.0)
    moves = 0
    for t in range(1, 601):
        a_good = (t // 6) % 2 == 0
        decision = d.step(float(t), [c("a", 0.9 if a_good else 0.1),
                                     c("b", 0.1 if a_good else 0.9)])
        moves += decision is not None
    assert moves <= 600 / CFG.hold_down_s


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        DecideConfig(margin=1.5)
    with pytest.raises(ValueError):
        DecideConfig(dwell_s=-1)


def evading(now: float = 0.0) -> ClassDecider:
    d = ClassDecider("default", CFG, started=now - 10, evade=True)
    d.step(now, [c("a", 0.9), c("b", 0.5), c("z", 0.6, DOWN)])
    assert d.current == "a"
    return d


def silent(name: str, score: float) -> Candidate:
    return Candidate(name, SUSPECT, score, score, -100.0, {}, 100, silent=True)


def test_a_silent_path_is_evaded_at_once_and_returned_to_when_it_answers() -> None:
    """A delay step: the class routes around the silence, comes back at the next reply,
    and its hold-down and dwell are as if nothing happened (the margin rules decide)."""
    d = evading()
    assert d.step(1.0, [c("a", 0.9, SUSPECT), c("b", 0.5)]) is None  # late: not silent
    out = d.step(1.02, [silent("a", 0.9), c("b", 0.5), c("z", 0.6, DOWN)])
    assert out is not None and out.kind == "evade" and (out.from_path, out.to_path) == ("a", "b")
    assert d.current == "b" and d.evaded_from == "a"
    # While away, nothing voluntary: b looking better than a moves nothing.
    assert d.step(1.04, [silent("a", 0.1), c("b", 0.9)]) is None
    back = d.step(1.06, [c("a", 0.4), c("b", 0.9)])
    assert back is not None and back.kind == "return" and back.to_path == "a"
    assert d.current == "a" and d.evaded_from is None and d.last_switch == 0.0
    # The voluntary rules as before: b, better by the margin, moves it after the dwell.
    assert d.step(16.0, [c("a", 0.4), c("b", 0.9)]) is None
    moved = d.step(16.0 + CFG.dwell_s, [c("a", 0.4), c("b", 0.9)])
    assert moved is not None and moved.kind == "switch"


def test_a_silent_path_declared_down_is_a_failover_where_the_class_already_is() -> None:
    d = evading()
    d.step(1.0, [silent("a", 0.9), c("b", 0.5)])
    out = d.step(1.05, [c("a", 0.0, DOWN), c("b", 0.5)])
    assert out is not None and out.kind == "failover"
    assert (out.from_path, out.to_path) == ("a", "b") and d.current == "b"
    assert d.evaded_from is None and d.last_switch == 1.05
    assert d.step(1.2, [c("a", 0.9), c("b", 0.5)]) is None  # no return from a failover


def test_the_evaded_to_path_failing_is_a_failover_from_it() -> None:
    d = evading()
    first = d.step(1.0, [silent("a", 0.9), c("b", 0.5), c("z", 0.4)])
    assert first is not None and first.to_path == "b"
    out = d.step(1.05, [silent("a", 0.9), c("b", 0.0, DOWN), c("z", 0.4)])
    assert out is not None and out.kind == "failover" and out.from_path == "b"
    assert out.to_path == "z" and d.evaded_from is None


def test_no_evasion_without_leave_or_without_a_path_that_answers() -> None:
    plain = active_on("a")
    assert plain.step(1.0, [silent("a", 0.9), c("other", 0.5)]) is None
    d = evading()
    assert d.step(1.0, [silent("a", 0.9), c("b", 0.5, SUSPECT), silent("z", 0.8)]) is None
    assert d.current == "a"
