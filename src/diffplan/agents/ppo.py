"""PPO for ``diffplan train-agent``: the packaged Walker2d expert's algorithm.

Observation and reward normalisation (``VecNormalize``) and the RL Zoo's Walker2d policy
(see :data:`PPO_KWARGS`). Checkpoints: weights as safetensors, the optimizer via
``torch.save`` read back with ``weights_only=True``, normalisation statistics as JSON.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from diffplan.agents.checkpoint import load_weights, save_weights, write_state
from diffplan.agents.gaussian_mlp import GaussianMLP, GaussianMLPSpec, save_gaussian_mlp

NAME = "PPO"
HIDDEN = [256, 256]
# The RL Zoo's Walker2d policy (256x256 ReLU, log_std_init -2, no orthogonal init, clip 0.1,
# its entropy and value coefficients) with a lighter update schedule: 2048-step rollouts,
# 10 epochs of batch 64 (the Zoo: 512 steps, 20 epochs of batch 32, 4x the gradient steps
# per env step, too slow for 2 CPU cores) and a learning rate raised to match.
PPO_KWARGS = {
    "n_steps": 2048,
    "batch_size": 64,
    "gamma": 0.99,
    "learning_rate": 1e-4,
    "ent_coef": 0.000585045,
    "clip_range": 0.1,
    "n_epochs": 10,
    "gae_lambda": 0.95,
    "max_grad_norm": 1.0,
    "vf_coef": 0.871923,
}
HYPERPARAMETERS = (
    f"{json.dumps(PPO_KWARGS)}, net_arch pi/vf {HIDDEN}, ReLU, log_std_init -2, "
    "ortho_init False; observation and reward normalisation"
)


def build(env, seed: int):
    """``(model, venv)``: PPO on ``env`` (an SB3 vec env) wrapped in ``VecNormalize``."""
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecNormalize

    venv = VecNormalize(env, norm_obs=True, norm_reward=True, clip_obs=10.0)
    policy_kwargs = {
        "log_std_init": -2.0,
        "ortho_init": False,
        "activation_fn": torch.nn.ReLU,
        "net_arch": {"pi": HIDDEN, "vf": HIDDEN},
    }
    model = PPO(
        "MlpPolicy", venv, seed=seed, device="cpu", verbose=0, policy_kwargs=policy_kwargs,
        **PPO_KWARGS,
    )  # fmt: skip
    return model, venv


def export(model, venv, env_id: str, directory: Path, training: dict) -> None:
    """Write the policy as a diffplan agent directory (:mod:`diffplan.agents.gaussian_mlp`)."""
    rms = venv.obs_rms
    normalisation = (rms.mean.tolist(), rms.var.tolist(), venv.clip_obs, venv.epsilon)
    spec = GaussianMLPSpec.for_env(venv, env_id, HIDDEN, NAME, training, normalisation)
    policy = GaussianMLP(spec)
    sb3 = model.policy
    policy.trunk.load_state_dict(sb3.mlp_extractor.policy_net.state_dict())
    policy.mean.load_state_dict(sb3.action_net.state_dict())
    policy.log_std.data.copy_(sb3.log_std.data)
    save_gaussian_mlp(directory, spec, policy)


def save_checkpoint(model, venv, directory: Path) -> None:
    """Weights, optimizer and normalisation statistics; ``state.json`` is written last."""
    save_weights(directory, model.policy.state_dict(), model.policy.optimizer.state_dict())
    stats = {
        name: {
            "mean": rms.mean.tolist(),
            "var": np.atleast_1d(rms.var).tolist(),
            "count": float(rms.count),
        }
        for name, rms in (("obs", venv.obs_rms), ("ret", venv.ret_rms))
    }
    write_state(directory, NAME, model, **stats)


def load_checkpoint(model, venv, directory: Path) -> None:
    """Restore what :func:`save_checkpoint` wrote into ``model`` and ``venv``."""
    weights, optimizer, state = load_weights(directory)
    model.policy.load_state_dict(weights)
    model.policy.optimizer.load_state_dict(optimizer)
    for name, rms in (("obs", venv.obs_rms), ("ret", venv.ret_rms)):
        rms.mean = np.asarray(state[name]["mean"]).reshape(rms.mean.shape)
        rms.var = np.asarray(state[name]["var"]).reshape(np.shape(rms.var))
        rms.count = state[name]["count"]
    model.num_timesteps = state["num_timesteps"]
