"""diffplan's own agent format and the PPO expert's export and checkpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from diffplan.agents import AgentError
from diffplan.agents.gaussian_mlp import load_gaussian_mlp
from diffplan.agents.train_expert import (
    PPO_KWARGS,
    TrainAgentConfig,
    _export,
    _load_checkpoint,
    _save_checkpoint,
)


@pytest.fixture
def ppo(tmp_path):
    sb3 = pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    def build(seed: int):
        venv = VecNormalize(make_vec_env("Walker2d-v5", n_envs=1, seed=seed), clip_obs=10.0)
        kwargs = {
            "log_std_init": -2.0,
            "ortho_init": False,
            "activation_fn": torch.nn.ReLU,
            "net_arch": {"pi": [256, 256], "vf": [256, 256]},
        }
        model = sb3.PPO(
            "MlpPolicy", venv, seed=seed, device="cpu", policy_kwargs=kwargs, **PPO_KWARGS
        )
        return model, venv

    return build


def test_export_acts_like_stable_baselines3(tmp_path, ppo):
    model, venv = ppo(0)
    rng = np.random.default_rng(0)
    venv.obs_rms.mean = rng.normal(size=17)  # non-trivial normalisation statistics
    venv.obs_rms.var = rng.uniform(0.5, 4.0, size=17)
    _export(model, venv, TrainAgentConfig(out=tmp_path), tmp_path, {"num_timesteps": 0})
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
    _save_checkpoint(model, venv, tmp_path / "checkpoint")
    fresh, fresh_venv = ppo(1)
    _load_checkpoint(fresh, fresh_venv, tmp_path / "checkpoint")
    assert fresh.num_timesteps == 1234
    np.testing.assert_array_equal(fresh_venv.obs_rms.mean, np.arange(17.0))
    for (name, a), b in zip(
        model.policy.state_dict().items(), fresh.policy.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        _load_checkpoint(fresh, fresh_venv, tmp_path / "elsewhere")


def test_bad_agent_directories(tmp_path, ppo):
    with pytest.raises(FileNotFoundError, match=r"agent\.json and policy\.safetensors"):
        load_gaussian_mlp(tmp_path)
    model, venv = ppo(0)
    _export(model, venv, TrainAgentConfig(out=tmp_path), tmp_path, {})
    spec = json.loads((tmp_path / "agent.json").read_text())
    (tmp_path / "agent.json").write_text(json.dumps({**spec, "hidden": [64, 64]}))
    with pytest.raises(AgentError, match="weights don't match"):
        load_gaussian_mlp(tmp_path)
    (tmp_path / "agent.json").write_text(json.dumps({**spec, "format": "other-v9"}))
    with pytest.raises(AgentError, match="format 'other-v9'"):
        load_gaussian_mlp(tmp_path)


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
