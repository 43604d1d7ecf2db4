"""When realtime is copied onto a second path (app/core/copies.py): pure, times given."""

from __future__ import annotations

from dataclasses import replace

from app.core.copies import ALWAYS, AUTO, OFF, CopyConfig, CopyDecider
from app.core.decide import Candidate
from app.core.liveness import Health


def cand(name: str, score: float = 0.8, health: Health = Health.UP, loss: float = 0.0,
         jitter: float = 2.0, degrading: bool = False) -> Candidate:
    return Candidate(name, health, score, score, 0.0,
                     {"loss": loss, "recent_lost": 0.0, "jitter_ms": jitter},
                     samples=100, degrading=degrading)


CFG = CopyConfig(hold_down_s=10.0, after_failure_s=30.0)


def test_auto_copies_switch_on_when_realtimes_path_loses_and_off_after_the_hold_down() -> None:
    d = CopyDecider(AUTO, shared_exit=True, cfg=CFG)
    clean = [cand("tyo", 0.85), cand("hk", 0.7), cand("sgp", 0.6)]
    assert not d.step(0.0, "tyo", clean).on
    lossy = [cand("tyo", 0.6, loss=0.03), cand("hk", 0.7), cand("sgp", 0.6)]
    v = d.step(1.0, "tyo", lossy)
    assert v.on and v.paths == ("hk",) and "loses 3.0 %" in v.reason
    # Clean again: still on for the hold-down, then off.
    assert d.step(2.0, "tyo", clean).on
    assert d.step(11.9, "tyo", clean).on
    assert not d.step(12.1, "tyo", clean).on


def test_a_relapse_during_the_hold_down_starts_it_again() -> None:
    d = CopyDecider(AUTO, shared_exit=True, cfg=CFG)
    clean = [cand("tyo"), cand("hk", 0.7)]
    d.step(0.0, "tyo", [cand("tyo", jitter=30.0), cand("hk", 0.7)])
    d.step(5.0, "tyo", clean)
    d.step(9.0, "tyo", [cand("tyo", degrading=True), cand("hk", 0.7)])
    assert d.step(10.0, "tyo", clean).on  # clear again: the hold-down starts over
    assert d.step(19.9, "tyo", clean).on
    assert not d.step(20.1, "tyo", clean).on


def test_copies_stay_on_for_a_while_after_any_path_failed() -> None:
    d = CopyDecider(AUTO, shared_exit=True, cfg=CFG)
    d.step(0.0, "tyo", [cand("tyo"), cand("hk", 0.7), cand("sgp", 0.6)])
    v = d.step(1.0, "hk", [cand("tyo", 0.0, Health.DOWN), cand("hk", 0.7), cand("sgp", 0.6)])
    assert v.on and v.paths == ("sgp",) and "a path failed" in v.reason
    after = [cand("tyo", 0.0, Health.DOWN), cand("hk", 0.7), cand("sgp", 0.6)]
    assert d.step(30.5, "hk", after).on  # the failure's 30 s, then the hold-down
    assert d.step(31.5, "hk", after).on
    assert not d.step(41.6, "hk", after).on


def test_the_copy_path_stays_through_a_suspect_moment_and_moves_off_a_dead_one() -> None:
    d = CopyDecider(ALWAYS, shared_exit=True, cfg=CFG)
    assert d.step(0.0, "tyo", [cand("tyo"), cand("hk", 0.7), cand("sgp", 0.6)]).paths == ("hk",)
    # sgp scores better now, hk is suspect for a moment: the copies stay on hk.
    v = d.step(1.0, "tyo", [cand("tyo"), cand("hk", 0.7, Health.SUSPECT), cand("sgp", 0.9)])
    assert v.paths == ("hk",)
    v = d.step(2.0, "tyo", [cand("tyo"), cand("hk", 0.0, Health.DOWN), cand("sgp", 0.9)])
    assert v.paths == ("sgp",)


def test_off_on_separate_exits_and_when_the_profile_says_so_and_without_a_second_path() -> None:
    lossy = [cand("tyo", loss=0.2), cand("hk")]
    v = CopyDecider(ALWAYS, shared_exit=False).step(0.0, "tyo", lossy)
    assert not v.on and "separate exits" in v.reason
    v = CopyDecider(OFF, shared_exit=True).step(0.0, "tyo", lossy)
    assert not v.on and "profile setting" in v.reason
    v = CopyDecider(ALWAYS, shared_exit=True).step(0.0, "tyo", [cand("tyo"),
                                                                cand("hk", 0, Health.DOWN)])
    assert not v.on and "no second path" in v.reason
    assert not CopyDecider(ALWAYS, shared_exit=True).step(0.0, None, lossy).on


def test_the_copy_path_is_never_one_scoring_0_or_just_back_from_down() -> None:
    d = CopyDecider(ALWAYS, shared_exit=True, cfg=replace(CFG, path_hold_down_s=15.0))
    # us is up but scores 0 (it loses past the score's limit): sgp, though it scores less
    # than us did a moment ago.
    assert d.step(0.0, "tyo", [cand("tyo"), cand("us", 0.0), cand("sgp", 0.3)]).paths \
        == ("sgp",)
    # hk goes down and comes back scoring best: not before its hold-down is over.
    d.step(1.0, "tyo", [cand("tyo"), cand("hk", 0.0, Health.DOWN), cand("sgp", 0.3)])
    back = [cand("tyo"), cand("hk", 0.9), cand("sgp", 0.3)]
    assert d.step(2.0, "tyo", back).paths == ("sgp",)
    assert d.step(16.9, "tyo", back).paths == ("sgp",)
    assert d.step(17.1, "tyo", back).paths == ("hk",)
    # Nothing eligible but the path that scores 0: no copies (they would save nothing).
    v = d.step(18.0, "tyo", [cand("tyo"), cand("us", 0.0), cand("hk", 0.0, Health.DOWN)])
    assert not v.on and "no second path" in v.reason


def test_the_copy_path_moves_only_to_a_clearly_better_one() -> None:
    d = CopyDecider(ALWAYS, shared_exit=True, cfg=CFG)
    assert d.step(0.0, "tyo", [cand("tyo"), cand("hk", 0.7), cand("sgp", 0.6)]).paths == ("hk",)
    assert d.step(1.0, "tyo", [cand("tyo"), cand("hk", 0.6), cand("sgp", 0.65)]).paths \
        == ("hk",)  # close: stays
    assert d.step(2.0, "tyo", [cand("tyo"), cand("hk", 0.4), cand("sgp", 0.65)]).paths \
        == ("sgp",)
    # A copy path that falls to 0 is left at once.
    assert d.step(3.0, "tyo", [cand("tyo"), cand("hk", 0.6), cand("sgp", 0.0)]).paths \
        == ("hk",)
