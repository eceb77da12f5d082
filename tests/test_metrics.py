"""The report's metrics against hand computations."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from diffplan.data import DatasetInfo
from diffplan.evaluation import EpisodeResult, summarize
from diffplan.evaluation.closed_loop import run_episodes

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


class ConstantController:
    """Always the same action; records which environments it was asked about."""

    def __init__(self, action: np.ndarray) -> None:
        self.action, self.asked = action, []

    def reset(self, num_envs: int) -> None:
        self.asked = []

    def act(self, observations: np.ndarray, env_ids: np.ndarray) -> np.ndarray:
        self.asked.append(env_ids.copy())
        return np.repeat(self.action[None], len(env_ids), axis=0)


def single_episode(env_id: str, seed: int, action: np.ndarray) -> tuple[float, int, bool]:
    env = gym.make(env_id)
    env.reset(seed=seed)
    total, steps = 0.0, 0
    while True:
        _, reward, terminated, truncated, _ = env.step(action)
        total, steps = total + reward, steps + 1
        if terminated or truncated:
            return total, steps, terminated


def test_run_episodes_matches_single_env_rollouts_and_counts_falls():
    action = np.full(3, 0.5, np.float32)  # Hopper falls quickly under a constant action
    controller = ConstantController(action)
    results = run_episodes(controller, "Hopper-v5", seeds=[3, 4, 5])
    for result in results:
        total, steps, fell = single_episode("Hopper-v5", result.seed, action)
        assert result.total_return == pytest.approx(total)
        assert (result.length, result.fell) == (steps, fell)
    assert all(r.fell for r in results) and max(r.length for r in results) < 1000
    # finished episodes are not asked for actions again
    longest = max(r.length for r in results)
    assert len(controller.asked) == longest
    assert sum(len(ids) for ids in controller.asked) == sum(r.length for r in results)


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    from diffplan.evaluation.metrics import bootstrap_ci

    values = [4000.0, 4500.0, 1200.0, 4700.0, 4600.0, 4550.0]
    low, high = bootstrap_ci(values, seed=3)
    assert (low, high) == bootstrap_ci(values, seed=3)
    assert low < np.mean(values) < high
    assert min(values) <= low and high <= max(values)
    narrow = bootstrap_ci(values, confidence=0.5, seed=3)
    assert low < narrow[0] < narrow[1] < high
    assert bootstrap_ci([2.0, 2.0]) == (2.0, 2.0)
    for bad in ([1.0], [1.0, float("nan")]):
        with pytest.raises(ValueError, match="bootstrap CI needs"):
            bootstrap_ci(bad)
    metrics = summarize([EpisodeResult(i, v, 1000, False) for i, v in enumerate(values)], DATA)
    assert (metrics.ci_low, metrics.ci_high) == bootstrap_ci(values)
