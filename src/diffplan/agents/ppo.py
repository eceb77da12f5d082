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
from safetensors.torch import load_file, save_file

from diffplan.agents.gaussian_mlp import RELU, GaussianMLP, GaussianMLPSpec, save_gaussian_mlp
from diffplan.atomic import atomic_path, write_json

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
    space = venv.action_space
    spec = GaussianMLPSpec(
        env_id=env_id,
        obs_dim=int(venv.observation_space.shape[0]),
        act_dim=int(space.shape[0]),
        hidden=HIDDEN,
        activation=RELU,
        obs_mean=venv.obs_rms.mean.tolist(),
        obs_var=venv.obs_rms.var.tolist(),
        obs_clip=float(venv.clip_obs),
        obs_epsilon=float(venv.epsilon),
        action_low=space.low.tolist(),
        action_high=space.high.tolist(),
        algorithm=NAME,
        training=training,
    )
    policy = GaussianMLP(spec)
    sb3 = model.policy
    policy.trunk.load_state_dict(sb3.mlp_extractor.policy_net.state_dict())
    policy.mean.load_state_dict(sb3.action_net.state_dict())
    policy.log_std.data.copy_(sb3.log_std.data)
    save_gaussian_mlp(directory, spec, policy)


def save_checkpoint(model, venv, directory: Path) -> None:
    """Weights, optimizer and normalisation statistics; ``state.json`` is written last."""
    directory.mkdir(parents=True, exist_ok=True)
    with atomic_path(directory / "policy.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in model.policy.state_dict().items()}, tmp)
    with atomic_path(directory / "optimizer.pt") as tmp:
        torch.save(model.policy.optimizer.state_dict(), tmp)
    stats = {
        name: {
            "mean": rms.mean.tolist(),
            "var": np.atleast_1d(rms.var).tolist(),
            "count": float(rms.count),
        }
        for name, rms in (("obs", venv.obs_rms), ("ret", venv.ret_rms))
    }
    write_json(
        directory / "state.json",
        {"algorithm": NAME, "num_timesteps": int(model.num_timesteps), **stats},
    )


def load_checkpoint(model, venv, directory: Path) -> None:
    """Restore what :func:`save_checkpoint` wrote into ``model`` and ``venv``."""
    if not (directory / "state.json").is_file():
        raise FileNotFoundError(f"--resume: no checkpoint in {directory}")
    model.policy.load_state_dict(load_file(directory / "policy.safetensors"))
    model.policy.optimizer.load_state_dict(
        torch.load(directory / "optimizer.pt", weights_only=True)
    )
    state = json.loads((directory / "state.json").read_text())
    for name, rms in (("obs", venv.obs_rms), ("ret", venv.ret_rms)):
        rms.mean = np.asarray(state[name]["mean"]).reshape(rms.mean.shape)
        rms.var = np.asarray(state[name]["var"]).reshape(np.shape(rms.var))
        rms.count = state[name]["count"]
    model.num_timesteps = state["num_timesteps"]
