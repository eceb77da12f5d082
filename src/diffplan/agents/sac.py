"""SAC for ``diffplan train-agent --algorithm sac``: D4RL's algorithm for its medium agents.

stable-baselines3's SAC with the RL Zoo's MuJoCo settings (:data:`SAC_KWARGS`), no
normalisation. The actor is exported as a squashed-Gaussian diffplan agent. Checkpoints
hold everything a resumed run needs: the networks and the entropy coefficient as
safetensors, the optimizers via ``torch.save`` read back with ``weights_only=True``, and the
replay buffer as a pickle-free ``.npz``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from diffplan.agents.checkpoint import load_weights, save_weights, write_state
from diffplan.agents.gaussian_mlp import GaussianMLP, GaussianMLPSpec, save_gaussian_mlp
from diffplan.atomic import atomic_path

NAME = "SAC"
HIDDEN = [256, 256]
# The RL Zoo's Hopper/Walker2d SAC: SB3's defaults with 10,000 random steps first.
SAC_KWARGS = {
    "learning_starts": 10_000,
    "buffer_size": 1_000_000,
    "batch_size": 256,
    "learning_rate": 3e-4,
    "tau": 0.005,
    "gamma": 0.99,
    "train_freq": 1,
    "gradient_steps": 1,
    "ent_coef": "auto",
}
HYPERPARAMETERS = f"{json.dumps(SAC_KWARGS)}, net_arch {HIDDEN}, ReLU; no normalisation"
BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def build(env, seed: int):
    """``(model, env)``: SAC on ``env`` (an SB3 vec env)."""
    from stable_baselines3 import SAC

    model = SAC(
        "MlpPolicy", env, seed=seed, device="cpu", verbose=0,
        policy_kwargs={"net_arch": HIDDEN}, **SAC_KWARGS,
    )  # fmt: skip
    return model, env


def export(model, venv, env_id: str, directory: Path, training: dict) -> None:
    """Write the actor as a squashed-Gaussian diffplan agent directory."""
    spec = GaussianMLPSpec.for_env(venv, env_id, HIDDEN, NAME, training, squash=True)
    policy = GaussianMLP(spec)
    actor = model.actor
    policy.trunk.load_state_dict(actor.latent_pi.state_dict())
    policy.mean.load_state_dict(actor.mu.state_dict())
    policy.log_std.load_state_dict(actor.log_std.state_dict())
    save_gaussian_mlp(directory, spec, policy)


def save_checkpoint(model, venv, directory: Path) -> None:
    """Networks, entropy coefficient, optimizers and replay buffer; ``state.json`` last."""
    weights = {**model.policy.state_dict(), "log_ent_coef": model.log_ent_coef}
    save_weights(directory, weights, _optimizers(model))
    buffer = model.replay_buffer
    size = buffer.buffer_size if buffer.full else buffer.pos
    with atomic_path(directory / "replay_buffer.npz") as tmp, open(tmp, "wb") as file:
        np.savez(file, **{name: getattr(buffer, name)[:size] for name in BUFFER_FIELDS})
    write_state(
        directory, NAME, model, n_updates=int(model._n_updates), buffer_pos=int(buffer.pos),
        buffer_full=bool(buffer.full),
    )  # fmt: skip


def load_checkpoint(model, venv, directory: Path) -> None:
    """Restore what :func:`save_checkpoint` wrote into ``model``."""
    weights, saved, state = load_weights(directory)
    with torch.no_grad():
        model.log_ent_coef.copy_(weights.pop("log_ent_coef"))
    model.policy.load_state_dict(weights)
    for name, optimizer in _optimizer_objects(model).items():
        optimizer.load_state_dict(saved[name])
    buffer = model.replay_buffer
    with np.load(directory / "replay_buffer.npz", allow_pickle=False) as arrays:
        for name in BUFFER_FIELDS:
            getattr(buffer, name)[: len(arrays[name])] = arrays[name]
    buffer.pos, buffer.full = state["buffer_pos"], state["buffer_full"]
    model.num_timesteps, model._n_updates = state["num_timesteps"], state["n_updates"]


def _optimizer_objects(model) -> dict:
    return {
        "actor": model.actor.optimizer,
        "critic": model.critic.optimizer,
        "ent_coef": model.ent_coef_optimizer,
    }


def _optimizers(model) -> dict:
    return {name: opt.state_dict() for name, opt in _optimizer_objects(model).items()}
