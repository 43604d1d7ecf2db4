"""Scoring: the documented formula, normalisation and the 5 % rule."""

from __future__ import annotations

import pytest

from app.core.profiles.model import Weights
from app.core.scoring import ScoreInput, episode_limit, score_paths


def path(name: str, rtt: float | None = 100.0, loss: float = 0.0, jitter: float | None = 0.0,
         cost: float = 1.0, up: bool = True) -> ScoreInput:
    return ScoreInput(name, up, rtt, loss, jitter, cost)


def test_formula_with_default_weights() -> None:
    scores = score_paths([path("a", rtt=100), path("b", rtt=200, loss=0.02, cost=2.0)],
                         Weights())
    assert scores["a"].score == pytest.approx(1.0)
    # b: L = 100/200, P = 1 - 0.02/0.05, C = 1/(1 + 2 - 1)
    expected = 0.4 * 0.5 + 0.3 * 0.6 + 0.3 * 0.5
    assert scores["b"].score == pytest.approx(expected)
    assert (scores["b"].latency, scores["b"].loss, scores["b"].cost) == pytest.approx(
        (0.5, 0.6, 0.5))


def test_loss_above_five_percent_scores_zero_but_keeps_a_raw_rank() -> None:
    scores = score_paths([path("ok", loss=0.05), path("bad", loss=0.051, rtt=50)],
                         Weights())
    assert scores["ok"].score > 0
    assert scores["bad"].score == 0.0
    assert scores["bad"].raw > 0


def test_down_or_unmeasured_paths_score_zero() -> None:
    scores = score_paths([path("down", up=False), path("new", rtt=None), path("up")],
                         Weights())
    assert scores["down"].score == scores["down"].raw == 0.0
    assert scores["new"].score == 0.0
    assert scores["up"].score == pytest.approx(1.0)


def test_latency_is_relative_to_the_fastest_live_path() -> None:
    # A down path's RTT does not set the reference.
    scores = score_paths([path("fast", rtt=10, up=False), path("a", rtt=100),
                          path("b", rtt=400)], Weights(1, 0, 0, 0))
    assert scores["a"].score == pytest.approx(1.0)
    assert scores["b"].score == pytest.approx(0.25)


def test_jitter_counts_only_when_weighted() -> None:
    calm, noisy = path("calm", jitter=0.0), path("noisy", jitter=40.0)
    default = score_paths([calm, noisy], Weights())
    assert default["calm"].score == default["noisy"].score
    assert default["noisy"].jitter == pytest.approx(1 / 3)
    weighted = score_paths([calm, noisy], Weights(0.4, 0.3, 0.3, 0.3))
    assert weighted["noisy"].score < weighted["calm"].score


def test_cost_is_relative_to_the_cheapest_gateway() -> None:
    scores = score_paths([path("free", cost=0.0), path("paid", cost=1.0)],
                         Weights(0, 0, 1, 0))
    assert scores["free"].score == pytest.approx(1.0)
    assert scores["paid"].score == pytest.approx(0.5)


def test_weights_are_validated() -> None:
    with pytest.raises(ValueError):
        score_paths([path("a")], Weights(0, 0, 0, 0))
    with pytest.raises(ValueError):
        score_paths([path("a")], Weights(-0.1, 0.5, 0.5, 0))


def test_a_loss_episode_in_the_recent_window_scores_zero() -> None:
    """4 of the last 40 probes lost: score 0 at once, before the long window crosses 5 %."""
    calm = ScoreInput("calm", True, 100.0, 0.01, 0.0, 1.0, recent_lost=3)
    episode = ScoreInput("episode", True, 100.0, 0.01, 0.0, 1.0, recent_lost=4)
    scores = score_paths([calm, episode], Weights())
    assert scores["calm"].score == pytest.approx(scores["calm"].raw) and scores["calm"].score > 0
    assert scores["episode"].score == 0.0 and scores["episode"].raw > 0


def test_a_loss_episode_is_a_share_of_the_window_on_a_fast_probed_path() -> None:
    """200 probes in 2 s (10 ms): 4 lost is noise on a good route, 20 is an episode."""
    assert episode_limit(40) == 4 and episode_limit(200) == 20
    noise = ScoreInput("noise", True, 100.0, 0.01, 0.0, 1.0, recent_lost=6, recent_size=200)
    bad = ScoreInput("bad", True, 100.0, 0.01, 0.0, 1.0, recent_lost=20, recent_size=200)
    scores = score_paths([noise, bad], Weights())
    assert scores["noise"].score > 0 and scores["bad"].score == 0.0


def test_a_full_path_loses_probes_to_its_own_queue_and_only_scores_worse() -> None:
    """Full of Braid's own traffic: its loss counts in the loss term but never zeroes the
    score (no flush of the flows that fill it); its queue counts through the RTT."""
    empty = ScoreInput("empty", True, 60.0, 0.0, 0.0, 1.0)
    full = ScoreInput("full", True, 130.0, 0.08, 0.0, 1.0, recent_lost=30,
                      recent_size=200, saturated=True)
    lossy = ScoreInput("lossy", True, 130.0, 0.08, 0.0, 1.0)
    scores = score_paths([empty, full, lossy], Weights())
    assert scores["lossy"].score == 0.0
    assert 0 < scores["full"].score == pytest.approx(scores["full"].raw)
    assert scores["full"].score < scores["empty"].score - 0.1
