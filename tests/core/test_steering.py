"""Steering: decisions -> the desired state, and whose running flows move (the flush
policy), driven with explicit times and real trackers."""

from __future__ import annotations

from app.core.decide import DecideConfig
from app.core.liveness import LivenessConfig, ProbeTracker
from app.core.paths import PathRuntime
from app.core.pathstats import PathStats
from app.core.plan import PathSpec, path_mark
from app.core.profiles.model import Weights
from app.core.steering import Steering
from tests.core.test_plan import PATHS

# Shared-exit paths have one inner address; each gateway its own probe address.
SHARED = [PathSpec(**{**p.__dict__, "probe_target": f"10.77.{10 + p.index}.1"})
          for p in PATHS]

CFG = DecideConfig(margin=0.1, dwell_s=1.0, hold_down_s=2.0, warmup_s=0.5, min_samples=3)


def paths(specs: list[PathSpec] = PATHS) -> list[PathRuntime]:
    out = []
    for spec in specs:
        stats = PathStats()
        out.append(PathRuntime(spec, 1.0, stats, ProbeTracker(stats, LivenessConfig())))
    return out


def answer(p: PathRuntime, t: float, rtt: float, n: int = 5, seq0: int = 0) -> None:
    for i in range(n):
        p.tracker.sent(seq0 + i, t + i * 0.05)
        p.tracker.reply(seq0 + i, t + i * 0.05 + rtt)


def answered(specs: list[PathSpec] = PATHS) -> list[PathRuntime]:
    """The paths, each having answered at 20, 40, 60 ms (hk best, sgp worst)."""
    ps = paths(specs)
    for p, rtt in zip(ps, (0.02, 0.04, 0.06), strict=True):
        answer(p, 0.0, rtt)
    return ps


def kill(p: PathRuntime, t: float, seq0: int = 100) -> float:
    """Probes that go unanswered until the path is declared down; the time it is."""
    for i in range(10):
        p.tracker.sent(seq0 + i, t + i * 0.05)
    now = t + 2.0
    p.tracker.check(now)
    return now


def settle(st: Steering, now: float) -> None:
    st.step(now)
    st.committed(st.next_plan())


def test_a_dead_paths_flows_move_once_a_class_has_somewhere_to_go() -> None:
    ps = answered()
    st = Steering(ps, ("default",), CFG, Weights(), 0.0)
    settle(st, 1.0)
    assert st.targets() == {"default": "hk"} and st.all_settled
    now = kill(ps[0], 1.0)
    st.step(now)
    plan = st.next_plan()
    assert plan.state.marking is not None
    assert plan.state.marking.flush_marks == (path_mark(0),)
    assert plan.targets == {"default": "tyo"} and plan.must_send
    st.committed(plan)
    assert st.next_plan().state.marking.flush_marks == ()  # type: ignore[union-attr]


def test_on_a_shared_exit_every_move_takes_the_running_flows_along() -> None:
    for shared, flushed in ((False, ()), (True, (path_mark(1),))):
        ps = paths(SHARED if shared else PATHS)
        answer(ps[1], 0.0, 0.04)
        answer(ps[2], 0.0, 0.06)
        st = Steering(ps, ("default",), CFG, Weights(), 0.0, shared_exit=shared)
        settle(st, 1.0)
        assert st.targets() == {"default": "tyo"}
        answer(ps[0], 1.0, 0.01, n=40, seq0=200)  # hk comes up, much faster
        for t in (4.0, 5.5):  # past hold-down (2 s since up) and dwell (1 s)
            st.step(t)
        plan = st.next_plan()
        assert plan.targets == {"default": "hk"}
        assert plan.state.marking is not None and plan.state.marking.flush_marks == flushed
        assert plan.state.marking.masquerade is not shared


def test_classes_are_placed_by_priority_and_bulk_stays_off_realtimes_path() -> None:
    ps = answered()
    st = Steering(ps, ("default", "bulk", "realtime"), CFG, Weights(), 0.0)
    assert list(st.deciders) == ["realtime", "bulk", "default"]
    settle(st, 1.0)
    # realtime and default on the best path; bulk on the best other one.
    assert st.targets() == {"realtime": "hk", "bulk": "tyo", "default": "hk"}
    plan = st.next_plan()
    marks = {c.name: c.mark for c in plan.state.marking.classes}  # type: ignore[union-attr]
    assert marks == {"realtime": path_mark(0), "bulk": path_mark(1), "default": path_mark(0)}
    # With hk gone realtime moves to tyo, and bulk, kept off it, to sgp.
    now = kill(ps[0], 1.0)
    decisions = {d.cls: d for d in st.step(now)}
    assert decisions["realtime"].kind == "failover" and decisions["realtime"].to_path == "tyo"
    assert st.targets()["bulk"] == "tyo"  # not a failover for bulk: it leaves by its dwell
    for t in (now + 1.2, now + 3.5):  # past bulk's dwell on a path that scores 0 for it
        st.step(t)
    assert st.targets()["realtime"] == "tyo" and st.targets()["bulk"] == "sgp"
    assert any("kept off realtime's path tyo" in p.decision.reason
               for p in st.next_plan().pending)


def test_bulk_shares_realtimes_path_when_it_is_the_only_one_up() -> None:
    ps = paths()
    answer(ps[0], 0.0, 0.02)
    st = Steering(ps, ("realtime", "bulk"), CFG, Weights(), 0.0)
    for t in (0.6, 1.0):  # past the warm-up: the others never answered
        st.step(t)
    assert st.targets() == {"realtime": "hk", "bulk": "hk"}


def test_bulk_is_spread_over_the_paths_realtime_does_not_ride() -> None:
    ps = answered()
    st = Steering(ps, ("realtime", "bulk", "default"), CFG, Weights(), 0.0, spread=True)
    settle(st, 1.0)
    assert st.targets()["realtime"] == "hk"
    plan = st.next_plan()
    assert plan.state.marking is not None
    assert set(plan.state.marking.spread) == {path_mark(1), path_mark(2)}
    assert len(plan.state.marking.spread) == 20 and set(st.held_spread()) == {"tyo", "sgp"}
    # A score's wiggle re-weights nothing: no state to send.
    answer(ps[2], 1.0, 0.061, seq0=50)
    st.step(1.5)
    assert not st.dirty()
    # sgp dies: only its flows are flushed; with one path left bulk rides it alone.
    now = kill(ps[2], 1.5)
    st.step(now)
    plan = st.next_plan()
    assert plan.state.marking is not None
    assert plan.state.marking.spread == () and plan.state.marking.flush_marks == (
        path_mark(2),)
    assert plan.targets["bulk"] == "tyo"


def test_without_spreading_bulk_rides_one_path_as_before() -> None:
    ps = answered()
    st = Steering(ps, ("realtime", "bulk", "default"), CFG, Weights(), 0.0)
    settle(st, 1.0)
    assert st.next_plan().state.marking.spread == ()  # type: ignore[union-attr]
    assert "spread" not in st.next_plan().state.to_json()["marking"]


def test_a_spread_path_realtime_takes_is_flushed_on_a_shared_exit() -> None:
    ps = answered(SHARED)
    st = Steering(ps, ("realtime", "bulk"), CFG, Weights(), 0.0, shared_exit=True,
                  spread=True)
    settle(st, 1.0)
    assert set(st.held_spread()) == {"tyo", "sgp"}
    now = kill(ps[0], 1.0)  # realtime fails over to tyo, a spread path
    st.step(now)
    plan = st.next_plan()
    assert plan.targets["realtime"] == "tyo"
    assert plan.state.marking is not None and plan.state.marking.spread == ()
    assert plan.state.marking.flush_marks == (path_mark(0),)  # the dead path's
    st.committed(plan)
    for t in (now + 1.2, now + 3.5):  # bulk leaves realtime's path by its dwell ...
        st.step(t)
    plan = st.next_plan()
    assert plan.targets["bulk"] == "sgp"
    # ... and takes its flows along (a shared exit: moving them breaks nothing).
    assert plan.state.marking is not None and plan.state.marking.flush_marks == (
        path_mark(1),)


def test_a_move_off_a_spread_path_leaves_bulks_flows_alone_on_a_shared_exit() -> None:
    """default moving away from a path bulk is spread over flushes nothing: the flush is
    by path mark and would re-deal every bulk flow there too."""
    ps = paths(SHARED)
    answer(ps[1], 0.0, 0.04)
    answer(ps[2], 0.0, 0.06)
    st = Steering(ps, ("bulk", "default"), CFG, Weights(), 0.0, shared_exit=True,
                  spread=True)
    settle(st, 1.0)
    assert st.targets()["default"] == "tyo"
    answer(ps[0], 1.0, 0.01, n=40, seq0=200)  # hk comes up, much faster
    for t in (4.0, 5.5):
        st.step(t)
    plan = st.next_plan()
    assert plan.targets["default"] == "hk" and "tyo" in st.spread_paths()
    assert plan.state.marking is not None and plan.state.marking.flush_marks == ()


def test_an_idle_spread_paths_move_goes_out_once_and_only_on_a_shared_exit() -> None:
    ps = answered(SHARED)
    st = Steering(ps, ("bulk", "default"), CFG, Weights(), 0.0, shared_exit=True,
                  spread=True)
    settle(st, 1.0)
    assert set(st.held_spread()) == {"hk", "tyo", "sgp"} and not st.dirty()
    flows = {"hk": 3, "tyo": 2, "sgp": 0}
    assert st.take_spread_flows(1.0, flows) == [("hk", "sgp")] and st.dirty()
    plan = st.next_plan()
    assert plan.must_send and plan.state.marking is not None
    assert plan.state.marking.moves == ((path_mark(0), path_mark(2)),)
    st.committed(plan)
    again = st.next_plan()  # one-off: the next state carries it no more
    assert not st.dirty() and not again.must_send
    assert again.state.marking is not None and again.state.marking.moves == ()
    # Separate exits: a moved TCP flow would be re-masqueraded and reset, so none moves.
    apart = Steering(answered(), ("bulk", "default"), CFG, Weights(), 0.0, spread=True)
    settle(apart, 1.0)
    assert apart.take_spread_flows(1.0, flows) == apart.take_spread_flows(1.0, flows) == []


def test_default_routes_around_a_silent_path_on_a_shared_exit_only() -> None:
    """hk's probes go unanswered (real trackers): once it is silent, default (and only
    default) leaves it with its running flows on a shared exit; realtime, which has
    copies for that, stays; on separate exits nothing moves before the verdict."""
    for shared in (False, True):
        ps = answered(SHARED if shared else PATHS)
        st = Steering(ps, ("realtime", "default"), CFG, Weights(), 0.0, shared_exit=shared)
        settle(st, 1.0)
        assert st.targets() == {"realtime": "hk", "default": "hk"}
        for i in range(4):  # sent every 10 ms from 1.0 s, never answered
            ps[0].tracker.sent(200 + i, 1.0 + i * 0.01)
        now = 1.0 + 0.03 + 0.02 + 0.02  # the last answered RTT, 20 ms margin, 20 ms quiet
        ps[0].tracker.check(now)
        assert ps[0].tracker.silent
        decisions = st.step(now)
        plan = st.next_plan()
        assert plan.state.marking is not None
        if not shared:
            assert decisions == [] and plan.targets["default"] == "hk"
            continue
        assert [(d.cls, d.kind, d.to_path) for d in decisions] == [("default", "evade", "tyo")]
        assert plan.targets == {"realtime": "hk", "default": "tyo"}
        assert plan.state.marking.flush_marks == (path_mark(0),)
        st.committed(plan)
        # hk answers again: default is back, and tyo's flows (default's) come along.
        ps[0].tracker.reply(203, now + 0.01)
        back = st.step(now + 0.01)
        assert [(d.kind, d.to_path) for d in back] == [("return", "hk")]
        plan = st.next_plan()
        assert plan.targets["default"] == "hk"
        assert plan.state.marking is not None
        assert plan.state.marking.flush_marks == (path_mark(1),)


def test_the_return_from_an_evasion_brings_flows_back_even_off_a_spread_path() -> None:
    """default went silent hk -> tyo, where bulk is spread: a flow started in those 50 ms
    has tyo's mark, and must come back to hk with its class."""
    ps = answered(SHARED)
    st = Steering(ps, ("realtime", "bulk", "default"), CFG, Weights(), 0.0,
                  shared_exit=True, spread=True)
    settle(st, 1.0)
    assert "tyo" in st.spread_paths()
    for i in range(4):
        ps[0].tracker.sent(200 + i, 1.0 + i * 0.01)
    now = 1.07
    ps[0].tracker.check(now)
    settle(st, now)
    assert st.targets()["default"] == "tyo"
    ps[0].tracker.reply(203, now + 0.01)
    st.step(now + 0.01)
    plan = st.next_plan()
    assert plan.targets["default"] == "hk" and plan.state.marking is not None
    assert path_mark(1) in plan.state.marking.flush_marks
