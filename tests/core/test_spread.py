"""Bulk spreading's weights and when they change (app/core/spread.py): pure, time given."""

from __future__ import annotations

from app.core.decide import Candidate
from app.core.liveness import Health
from app.core.spread import (
    CAPACITY_WINDOW_S,
    REWEIGHT_S,
    SLOTS,
    Capacity,
    Rebalancer,
    Spreader,
    SpreadVerdict,
    interleave,
    shares,
    weights,
)


def cand(name: str, score: float, health: Health = Health.UP) -> Candidate:
    return Candidate(name, health, score, score, 0.0)


THREE = [cand("hk", 1.0), cand("tyo", 0.8), cand("sgp", 0.75)]


def test_weights_are_the_score_until_every_capacity_is_known() -> None:
    assert weights(THREE, {"hk": 20e6, "tyo": None, "sgp": 10e6}) == {
        "hk": 1.0, "tyo": 0.8, "sgp": 0.75}
    w = weights(THREE, {"hk": 20e6, "tyo": 20e6, "sgp": 10e6})
    assert w == {"hk": 1.0, "tyo": 0.8, "sgp": 0.375}  # score x capacity / the largest


def test_shares_fill_every_slot_and_never_starve_a_path() -> None:
    s = shares({"hk": 1.0, "tyo": 0.8, "sgp": 0.375})
    assert sum(s.values()) == SLOTS and min(s.values()) >= 1
    # Each share is within one slot of its weight's share (the documented bound).
    total = 1.0 + 0.8 + 0.375
    for name, w in {"hk": 1.0, "tyo": 0.8, "sgp": 0.375}.items():
        assert abs(s[name] - w / total * SLOTS) <= 1
    assert shares({"a": 1.0, "b": 1e-9}) == {"a": SLOTS - 1, "b": 1}


def test_interleave_deals_consecutive_flows_onto_different_paths() -> None:
    slots = interleave({"a": 2, "b": 2, "c": 1})
    assert sorted(slots) == ["a", "a", "b", "b", "c"]
    assert len(set(slots[:3])) == 3  # the first three flows take three paths
    big = interleave({"hk": 9, "tyo": 7, "sgp": 4})
    # Any 6 consecutive new flows: every path gets one, none more than its share + 1.
    for i in range(len(big)):
        six = [big[(i + k) % len(big)] for k in range(6)]
        assert set(six) == {"hk", "tyo", "sgp"}


def test_capacity_is_the_median_saturated_rate_of_the_window() -> None:
    c = Capacity()
    c.update(0.0, 30e6, saturated=False)  # not queueing: says nothing of the capacity
    assert c.bps(0.0) is None
    c.update(1.0, 18e6, saturated=True)
    c.update(1.5, 45e6, saturated=True)  # a slow-start burst into the tunnel
    c.update(2.0, 19e6, saturated=True)
    assert c.bps(2.0) == 19e6
    assert c.bps(2.0 + CAPACITY_WINDOW_S + 1) is None  # too old


def test_no_spread_below_two_paths_and_never_on_realtimes_path() -> None:
    s = Spreader()
    assert s.step(0.0, [cand("hk", 1.0)], None) is None
    v = s.step(0.0, THREE, reserved="hk")
    assert v is not None and set(v.paths) == {"tyo", "sgp"} and "hk" not in v.slots
    # realtime's path is the only other one: then bulk may share it (nothing else is up).
    two = [cand("hk", 1.0), cand("tyo", 0.8, Health.DOWN)]
    assert Spreader().step(0.0, two, reserved="hk") is None


def test_dead_and_lossy_paths_leave_at_once() -> None:
    s = Spreader()
    assert s.step(0.0, THREE, None) is not None
    v = s.step(0.1, [THREE[0], cand("tyo", 0.8, Health.DOWN), THREE[2]], None)
    assert v is not None and set(v.paths) == {"hk", "sgp"}  # no hold-down for a death
    v = s.step(0.2, [THREE[0], THREE[1], cand("sgp", 0.0)], None)
    assert v is not None and set(v.paths) == {"hk", "tyo"}


def test_reweighting_waits_for_a_real_change_and_the_hold_down() -> None:
    s = Spreader()
    first = s.step(0.0, THREE, None)
    assert first is not None
    # A wiggle of the scores: the same slots, not even a new verdict.
    assert s.step(REWEIGHT_S + 1, [cand("hk", 0.97), cand("tyo", 0.82), cand("sgp", 0.74)],
                  None) is first
    moved = [cand("hk", 1.0), cand("tyo", 0.2), cand("sgp", 0.75)]
    assert s.step(REWEIGHT_S + 2, moved, None) is not first  # a real change, in time
    again = [cand("hk", 1.0), cand("tyo", 0.8), cand("sgp", 0.75)]
    held = s.step(REWEIGHT_S + 3, again, None)  # too soon after that change
    assert held is not None and held.slots.count("tyo") < first.slots.count("tyo")
    later = s.step(2 * REWEIGHT_S + 3, again, None)  # too soon, then taken
    assert later is not None and later.slots == first.slots


def test_a_suspect_path_stays_in_the_spread() -> None:
    """One missed probe is not a death: reshuffling the spread for it would reload the
    table for nothing (and a declared-down path leaves at once anyway)."""
    s = Spreader()
    first = s.step(0.0, THREE, None)
    assert s.step(0.1, [THREE[0], cand("tyo", 0.8, Health.SUSPECT), THREE[2]], None) is first


def verdict(w: dict[str, float], known: bool = True) -> SpreadVerdict:
    order = tuple(sorted(w, key=lambda n: -w[n]))
    return SpreadVerdict(order, order, w, known, 0.0)


THIN = verdict({"hk": 1.0, "tyo": 1.0, "sgp": 0.5})  # 20/20/10 Mbit/s, capacities known


def test_an_idle_spread_path_takes_a_flow_from_the_busiest_at_once() -> None:
    r = Rebalancer()
    # One flow from the path with the most flows per weight (hk and tyo weigh the same).
    assert r.step({"hk": 2, "tyo": 3, "sgp": 0}, THIN) == [("tyo", "sgp")]
    assert r.step({"hk": 2, "tyo": 2, "sgp": 1}, THIN) == []  # no idle path: nothing moves
    assert r.step({"hk": 3, "tyo": 0, "sgp": 1}, THIN) == [("hk", "tyo")]


def test_a_lone_flow_moves_only_onto_a_much_heavier_idle_path_and_never_back() -> None:
    r = Rebalancer()
    caps = {"hk": 20e6, "tyo": 20e6, "sgp": 10e6}
    # The thin path's flow is the batch's last: hk and tyo are idle.
    assert r.step({"hk": 0, "tyo": 0, "sgp": 1}, THIN, caps) == [("sgp", "hk")]
    for _ in range(3):  # now sgp and tyo are idle; hk's lone flow is where it is best
        assert r.step({"hk": 1, "tyo": 0, "sgp": 0}, THIN, caps) == []
    # Paths of like weights: a lone flow stays (it would gain nothing).
    even = Rebalancer()
    for _ in range(3):
        assert even.step({"a": 1, "b": 0}, verdict({"a": 1.0, "b": 1.0}),
                         {"a": 10e6, "b": 12e6}) == []
    # By the capacities measured now, not the weights (scores until every path was full):
    # none known for the idle path, none moves; known, it does, whatever the weights.
    unknown = Rebalancer()
    for _ in range(3):
        assert unknown.step({"hk": 0, "sgp": 1}, verdict({"hk": 1.0, "sgp": 0.9}, False),
                            {"hk": None, "sgp": 10e6}) == []
    assert unknown.step({"hk": 0, "sgp": 1}, verdict({"hk": 1.0, "sgp": 0.9}, False),
                        {"hk": 20e6, "sgp": 10e6}) == [("sgp", "hk")]


def test_each_idle_path_takes_at_most_one_flow_per_read() -> None:
    r = Rebalancer()
    assert sorted(r.step({"hk": 6, "tyo": 0, "sgp": 0}, THIN)) == [("hk", "sgp"), ("hk", "tyo")]
    assert r.moved == 2
    assert r.step({"hk": 1}, None) == [] and r.step({"hk": 1, "tyo": 0}, THIN) == []
