"""The report's metrics against hand computations."""

from __future__ import annotations

import pytest

from diffplan.data import DatasetInfo
from diffplan.evaluation import EpisodeResult, summarize

DATA = DatasetInfo(
    env_id="Walker2d-v5",
    obs_dim=17,
    act_dim=6,
    num_episodes=10,
    num_steps=10_000,
    mean_return=4940.3,
    v_rate=4.940,
    ref_min_score=1.629008,
    ref_max_score=4592.3,
)


def test_metrics_on_hand_made_episodes():
    results = [
        EpisodeResult(seed=0, total_return=5000.0, length=1000, fell=False),
        EpisodeResult(seed=1, total_return=1000.0, length=250, fell=True),
    ]
    metrics = summarize(results, DATA)
    assert metrics.episodes == 2 and metrics.falls == 1
    assert metrics.mean_return == 3000.0
    assert metrics.std_return == 2000.0  # population std of (5000, 1000)
    assert metrics.v_rate == pytest.approx(6000 / 1250)
    assert metrics.percent_of_data == pytest.approx(100 * 3000 / 4940.3)
    assert metrics.value_rate == pytest.approx(4.8 / 4.940)
    assert metrics.d4rl_score == pytest.approx(100 * (3000 - 1.629008) / (4592.3 - 1.629008))
    assert metrics.mean_length == 625.0


def test_report_row_is_reproduced():
    # the report's window 1: mean 4461.9377 over 10 episodes -> 90.318 % of 4940.3
    results = [
        EpisodeResult(seed=i, total_return=4461.9377, length=926, fell=False) for i in range(10)
    ]
    assert summarize(results, DATA).percent_of_data == pytest.approx(90.318, abs=1e-3)


def test_no_reference_scores_and_bad_input():
    info = DatasetInfo(None, 3, 1, 1, 10, 10.0, 1.0, None, None)
    assert summarize([EpisodeResult(0, 5.0, 5, False)], info).d4rl_score is None
    with pytest.raises(ValueError, match="no episodes"):
        summarize([], info)
    with pytest.raises(ValueError, match="positive"):
        summarize([EpisodeResult(0, 5.0, 0, False)], info)
