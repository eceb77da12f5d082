"""diffplan's own agent format and train-agent's PPO and SAC exports and checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffplan.agents import AgentError
from diffplan.agents import ppo as ppo_algorithm
from diffplan.agents import sac as sac_algorithm
from diffplan.agents.gaussian_mlp import load_gaussian_mlp


def builder(algorithm):
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_util import make_vec_env

    return lambda seed: algorithm.build(make_vec_env("Walker2d-v5", n_envs=1, seed=seed), seed)


@pytest.fixture
def ppo():
    return builder(ppo_algorithm)


@pytest.fixture
def sac():
    return builder(sac_algorithm)


def test_export_acts_like_stable_baselines3(tmp_path, ppo):
    model, venv = ppo(0)
    rng = np.random.default_rng(0)
    venv.obs_rms.mean = rng.normal(size=17)  # non-trivial normalisation statistics
    venv.obs_rms.var = rng.uniform(0.5, 4.0, size=17)
    ppo_algorithm.export(model, venv, "Walker2d-v5", tmp_path, {"num_timesteps": 0})
    agent = load_gaussian_mlp(tmp_path)
    observations = rng.normal(size=(6, 17)) * 3
    expected, _ = model.predict(venv.normalize_obs(observations), deterministic=True)
    np.testing.assert_allclose(agent.act(observations), expected, atol=1e-5)
    noisy = agent.act(observations, np.ones((6, 6)))
    assert np.all(noisy <= 1.0) and not np.allclose(noisy, agent.act(observations))


def test_checkpoint_round_trip_restores_training_state(tmp_path, ppo):
    model, venv = ppo(0)
    venv.obs_rms.mean = np.arange(17.0)
    model.num_timesteps = 1234
    ppo_algorithm.save_checkpoint(model, venv, tmp_path / "checkpoint")
    fresh, fresh_venv = ppo(1)
    ppo_algorithm.load_checkpoint(fresh, fresh_venv, tmp_path / "checkpoint")
    assert fresh.num_timesteps == 1234
    np.testing.assert_array_equal(fresh_venv.obs_rms.mean, np.arange(17.0))
    for (name, a), b in zip(
        model.policy.state_dict().items(), fresh.policy.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ppo_algorithm.load_checkpoint(fresh, fresh_venv, tmp_path / "elsewhere")


def test_bad_agent_directories(tmp_path, ppo):
    with pytest.raises(FileNotFoundError, match=r"agent\.json and policy\.safetensors"):
        load_gaussian_mlp(tmp_path)
    model, venv = ppo(0)
    ppo_algorithm.export(model, venv, "Walker2d-v5", tmp_path, {})
    spec = json.loads((tmp_path / "agent.json").read_text())
    (tmp_path / "agent.json").write_text(json.dumps({**spec, "hidden": [64, 64]}))
    with pytest.raises(AgentError, match="weights don't match"):
        load_gaussian_mlp(tmp_path)
    (tmp_path / "agent.json").write_text(json.dumps({**spec, "format": "other-v9"}))
    with pytest.raises(AgentError, match="format 'other-v9'"):
        load_gaussian_mlp(tmp_path)
    (tmp_path / "agent.json").write_text(json.dumps({**spec, "squash": "yes"}))
    with pytest.raises(AgentError, match="squash must be true or false"):
        load_gaussian_mlp(tmp_path)
    (tmp_path / "agent.json").write_text(json.dumps({**spec, "squash": True}))  # PPO's weights
    with pytest.raises(AgentError, match="weights don't match"):
        load_gaussian_mlp(tmp_path)


def test_sac_export_acts_like_stable_baselines3(tmp_path, sac):
    model, venv = sac(0)
    with torch.no_grad():  # a non-trivial log-std head: SB3 initialises it near zero
        model.actor.log_std.weight.normal_(0, 0.1)
    sac_algorithm.export(model, venv, "Walker2d-v5", tmp_path, {"num_timesteps": 0})
    agent = load_gaussian_mlp(tmp_path)
    assert agent.spec.squash and agent.algorithm == "SAC"
    observations = np.random.default_rng(0).normal(size=(6, 17)) * 3
    expected, _ = model.predict(observations, deterministic=True)
    np.testing.assert_allclose(agent.act(observations), expected, atol=1e-5)
    noise = np.random.default_rng(1).standard_normal((6, 6))
    obs = torch.as_tensor(observations, dtype=torch.float32)
    with torch.no_grad():
        mean, log_std, _ = model.actor.get_action_dist_params(obs)
    sampled = torch.tanh(mean + log_std.exp() * torch.as_tensor(noise, dtype=torch.float32))
    np.testing.assert_allclose(agent.act(observations, noise), sampled.numpy(), atol=1e-5)


def test_sac_checkpoint_round_trip_restores_training_state(tmp_path, sac):
    model, venv = sac(0)
    model.learn(300)  # fills the replay buffer (random steps before learning_starts)
    with torch.no_grad():
        model.log_ent_coef.fill_(-1.5)
    model._n_updates = 7
    sac_algorithm.save_checkpoint(model, venv, tmp_path / "checkpoint")
    fresh, fresh_venv = sac(1)
    sac_algorithm.load_checkpoint(fresh, fresh_venv, tmp_path / "checkpoint")
    assert (fresh.num_timesteps, fresh._n_updates) == (300, 7)
    assert float(fresh.log_ent_coef.detach()) == -1.5
    old, new = model.replay_buffer, fresh.replay_buffer
    assert (new.pos, new.full) == (old.pos, old.full) == (300, False)
    for name in sac_algorithm.BUFFER_FIELDS:
        np.testing.assert_array_equal(getattr(new, name)[:300], getattr(old, name)[:300])
    for (name, a), b in zip(
        model.policy.state_dict().items(), fresh.policy.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    optimizer = fresh.critic.optimizer.state_dict()
    assert optimizer == model.critic.optimizer.state_dict()


def test_resume_refuses_a_checkpoint_of_another_algorithm(tmp_path):
    pytest.importorskip("stable_baselines3")
    from diffplan.agents.train_expert import TrainAgentConfig, train_agent

    config = TrainAgentConfig(out=tmp_path, env="Hopper-v5", steps=2048, eval_episodes=1,
                              progress=False)  # fmt: skip
    train_agent(config)  # one PPO rollout
    card = (tmp_path / "MODEL_CARD.md").read_text()
    monitor = (tmp_path / "monitor" / "0.monitor.csv").read_text()
    config = TrainAgentConfig(**{**vars(config), "algorithm": "sac", "resume": True})
    with pytest.raises(ValueError, match=r"holds a PPO checkpoint, not SAC.*--algorithm ppo"):
        train_agent(config)
    assert (tmp_path / "MODEL_CARD.md").read_text() == card  # nothing overwritten
    assert (tmp_path / "monitor" / "0.monitor.csv").read_text() == monitor


def test_packaged_agent_loads_and_walks():
    import gymnasium as gym

    from diffplan.agents import PACKAGED_WALKER2D_AGENT, load_agent
    from diffplan.agents.experience import record_episodes

    card = (PACKAGED_WALKER2D_AGENT / "MODEL_CARD.md").read_text()
    assert "deterministic episodes" in card
    agent = load_agent(PACKAGED_WALKER2D_AGENT, gym.make("Walker2d-v5"))
    (episode,) = record_episodes(agent, "Walker2d-v5", steps=300, noise="none", num_envs=1)
    assert not episode.terminated and episode.total_return > 900  # ~4.4 reward per step
    with pytest.raises(ValueError, match="trained on Walker2d-v5, not a version of Hopper-v5"):
        load_agent(PACKAGED_WALKER2D_AGENT, gym.make("Hopper-v5"))
    with pytest.raises(AgentError, match="does not fit"):
        load_agent(PACKAGED_WALKER2D_AGENT, gym.make("Hopper-v5"), force_env=True)
