"""The task table (diffplan/tasks.json) and Hopper / HalfCheetah through the commands."""

from __future__ import annotations

import csv

import gymnasium as gym
import numpy as np
import pytest
from conftest import SHARED

from diffplan.agents import load_agent
from diffplan.collect import record_episodes
from diffplan.data.episodes import reference_scores
from diffplan.tasks import DEFAULT_ENV, find_task, require_agent, task_for, tasks

# D4RL's d4rl/infos.py REF_MIN_SCORE / REF_MAX_SCORE
D4RL = {
    "walker2d": (1.629008, 4592.3),
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
}
ZOO = {
    "Hopper-v5": "tqc-Hopper-v3/Hopper-v3.zip",
    "HalfCheetah-v5": "tqc-HalfCheetah-v3/HalfCheetah-v3.zip",
}


def mujoco_agent(env_id: str):
    path = SHARED / "data" / "mujoco-agents" / ZOO[env_id]
    if not path.exists():
        pytest.skip(f"{path} not found: the shared agents live in ../shared beside the repository")
    return path


@pytest.mark.parametrize(
    ("env_id", "family"),
    [
        ("Walker2d-v3", "walker2d"),
        ("Walker2d-v4", "walker2d"),
        ("Walker2d-v5", "walker2d"),
        ("Hopper-v5", "hopper"),
        ("halfcheetah-medium-v2", "halfcheetah"),
        ("mujoco/hopper/expert-v0", "hopper"),
    ],
)
def test_task_for_finds_the_family_of_any_version(env_id, family):
    assert task_for(env_id).family == family
    assert reference_scores(env_id) == D4RL[family]


def test_unknown_env_is_refused_with_the_known_tasks():
    assert find_task("CartPole-v1") is None and reference_scores(None) == (None, None)
    with pytest.raises(ValueError, match=r"Ant-v5.*known: Walker2d-v5, Hopper-v5, HalfCheetah-v5"):
        task_for("Ant-v5")


@pytest.mark.parametrize("family", ["walker2d", "hopper", "halfcheetah"])
def test_table_matches_d4rl_and_the_environment(family):
    task = tasks()[family]
    assert (task.ref_min, task.ref_max) == D4RL[family]
    assert task.normalized_score(task.ref_max) == pytest.approx(100.0)
    env = gym.make(task.env_id)
    assert env.observation_space.shape == (task.obs_dim,)
    assert env.action_space.shape == (task.act_dim,)
    assert env.spec.max_episode_steps == task.max_episode_steps
    env.close()


def test_per_task_defaults_and_agents():
    table = tasks()
    assert DEFAULT_ENV == "Walker2d-v5"
    assert (table["walker2d"].horizon, table["halfcheetah"].horizon) == (8, 4)
    assert (table["hopper"].diffuser_horizon, table["halfcheetah"].diffuser_horizon) == (32, 4)
    assert not table["halfcheetah"].can_fall and table["hopper"].can_fall
    assert (require_agent(None, "Walker2d-v4") / "agent.json").is_file()
    with pytest.raises(FileNotFoundError, match=r"no agent for Hopper-v5.*tqc-Hopper-v3"):
        require_agent(None, "Hopper-v5")


@pytest.mark.parametrize("env_id", ["Hopper-v5", "HalfCheetah-v5"])
def test_collect_runs_each_task_with_its_agent(env_id):
    task = task_for(env_id)
    env = gym.make(env_id)
    agent = load_agent(mujoco_agent(env_id), env)
    env.close()
    episodes = record_episodes(agent, env_id, steps=300, noise="none", num_envs=2)
    assert sum(len(e) for e in episodes) == 300
    assert episodes[0].observations.shape[1] == task.obs_dim
    # the expert moves forward: positive reward per step on both tasks
    assert np.mean(np.concatenate([e.rewards for e in episodes])) > 1.0
    if not task.can_fall:
        assert not any(e.terminated for e in episodes)


# HalfCheetah's H = 4 runs in CI (about a minute): its horizon is the one unlike Walker2d's
@pytest.mark.parametrize("env_id", [pytest.param("Hopper-v5", marks=pytest.mark.slow),
                                    "HalfCheetah-v5"])  # fmt: skip
def test_quick_run_on_each_task(env_id, tmp_path):
    from diffplan.cli import main

    main(["run", "--quick", "--env", env_id, "--agent", str(mujoco_agent(env_id)),
          "--threads", "1", "--out", str(tmp_path)])  # fmt: skip
    rows = list(csv.DictReader((tmp_path / "evaluation-report" / "metrics.csv").open()))
    horizon = task_for(env_id).horizon
    assert [row["label"] for row in rows] == ["k=1", f"k={horizon - 1}", f"k={horizon - 1} guided"]
    assert (tmp_path / "evaluation-tracked" / "report.md").stat().st_size > 0
