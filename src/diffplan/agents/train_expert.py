"""``diffplan train-agent``: train an expert with stable-baselines3 PPO and export it.

diffplan's main job needs data that a fresh machine can make offline; this
command trains the agent that makes it. PPO with observation normalisation
and the RL Zoo's Walker2d policy (see ``PPO_KWARGS``), exported in diffplan's own
safetensors + JSON format (:mod:`diffplan.agents.gaussian_mlp`) with a model
card. Checkpoints (weights as safetensors, optimizer via ``torch.save`` read
back with ``weights_only=True``, normalisation statistics as JSON) allow
``--resume``.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from safetensors.torch import load_file, save_file

import diffplan
from diffplan.agents.experience import record_episodes
from diffplan.agents.gaussian_mlp import (
    GaussianMLP,
    GaussianMLPSpec,
    save_gaussian_mlp,
)
from diffplan.agents.loading import load_agent
from diffplan.agents.replay import EpisodeRecorder, snapshot_dir, write_replay
from diffplan.atomic import atomic_path, write_json
from diffplan.data.episodes import Episode
from diffplan.outputs import output_folder
from diffplan.tasks import DEFAULT_ENV

RELU = "torch.nn.modules.activation ReLU"


@dataclass
class TrainAgentConfig:
    """Train a PPO expert (stable-baselines3) and export it as a diffplan agent."""

    out: Path
    """Output directory: agent (policy.safetensors, agent.json, MODEL_CARD.md), checkpoint/,
    monitor CSV."""
    env: str = DEFAULT_ENV
    """Gymnasium environment id."""
    steps: int = 2_000_000
    """Environment steps of training."""
    seed: int = 0
    """Seed of the environment, the policy and PPO's sampling."""
    checkpoint_every: int = 50_000
    """Save a checkpoint and export the agent every this many steps."""
    eval_episodes: int = 10
    """Deterministic episodes for the model card, seeds 10000, 10001, ..."""
    resume: bool = False
    """Continue from out/checkpoint."""
    record: bool = False
    """At every checkpoint keep the agent and the training episodes played since the previous
    one (out/snapshots/STEPS/{agent,replay}): the medium and medium-replay datasets'
    sources (`diffplan make-datasets`)."""
    progress: bool = True
    """Show a progress bar."""


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
HIDDEN = [256, 256]


def _export(model, venv, config: TrainAgentConfig, directory: Path, training: dict) -> None:
    space = venv.action_space
    spec = GaussianMLPSpec(
        env_id=config.env,
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
        algorithm="PPO",
        training=training,
    )
    policy = GaussianMLP(spec)
    sb3 = model.policy
    policy.trunk.load_state_dict(sb3.mlp_extractor.policy_net.state_dict())
    policy.mean.load_state_dict(sb3.action_net.state_dict())
    policy.log_std.data.copy_(sb3.log_std.data)
    save_gaussian_mlp(directory, spec, policy)


def _save_checkpoint(model, venv, directory: Path) -> None:
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
    write_json(directory / "state.json", {"num_timesteps": int(model.num_timesteps), **stats})


def _load_checkpoint(model, venv, directory: Path) -> None:
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


def evaluate_agent(agent_path: Path, env_id: str, episodes: int) -> list[tuple[float, int, bool]]:
    """(return, length, fell) of ``episodes`` deterministic episodes, seeds 10000 + i, of a
    diffplan agent directory or an SB3 zip."""
    env = gym.make(env_id)
    agent = load_agent(agent_path, env)
    env.close()
    done = record_episodes(
        agent, env_id, episodes=episodes, noise="none", seed=10_000, num_envs=min(episodes, 10)
    )
    return [(e.total_return, len(e), e.terminated) for e in done]


def write_model_card(
    directory: Path,
    config: TrainAgentConfig,
    training: dict,
    results: list[tuple[float, int, bool]],
) -> None:
    returns = np.array([r for r, _, _ in results])
    falls = sum(f for _, _, f in results)
    lines = [
        f"# PPO expert for {config.env}",
        "",
        "Trained by `diffplan train-agent` with stable-baselines3 PPO "
        "(observation and reward normalisation; hyperparameters below).",
        "",
        "| | |",
        "|---|---|",
        f"| command | `diffplan train-agent --env {config.env} --steps {config.steps} "
        f"--seed {config.seed} --out {config.out}` |",
        f"| environment steps | {training['num_timesteps']} |",
        f"| seed | {config.seed} |",
        f"| wall time | {training['wall_seconds'] / 60:.1f} min |",
        f"| hyperparameters | {json.dumps(PPO_KWARGS)}, net_arch pi/vf {HIDDEN}, ReLU, "
        "log_std_init -2, ortho_init False |",
        f"| versions | {json.dumps(training['versions'])} |",
        f"| return, {len(results)} deterministic episodes (seeds 10000+) | "
        f"{returns.mean():.1f} ± {returns.std():.1f} (min {returns.min():.1f}) |",
        f"| falls | {falls} of {len(results)} |",
        "",
        "Deterministic action: the Gaussian's mean on normalised observations, clipped to "
        "the action bounds. Weights: `policy.safetensors`; everything else: `agent.json`.",
        "",
    ]
    with atomic_path(directory / "MODEL_CARD.md") as tmp:
        tmp.write_text("\n".join(lines))


def train_agent(config: TrainAgentConfig) -> Path:
    """Run ``diffplan train-agent``; returns the agent directory (``config.out``)."""
    with output_folder(config.out, "train-agent", existing="reuse"):
        return _train_agent(config)


def _train_agent(config: TrainAgentConfig) -> Path:
    try:
        from stable_baselines3 import PPO
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.env_util import make_vec_env
        from stable_baselines3.common.vec_env import VecNormalize
    except ImportError:
        raise ImportError(
            "train-agent needs stable-baselines3: pip install 'diffplan[sb3]'"
        ) from None
    if config.steps < 1 or config.checkpoint_every < 1:
        raise ValueError("--steps and --checkpoint-every must be positive")
    torch.set_num_threads(1)  # small networks: threads only add contention
    config.out.mkdir(parents=True, exist_ok=True)
    checkpoint = config.out / "checkpoint"
    played: list[Episode] = []  # episodes recorded since the last snapshot (--record)
    venv = VecNormalize(
        make_vec_env(
            config.env,
            n_envs=1,
            seed=config.seed,
            monitor_dir=str(config.out / "monitor"),
            wrapper_class=EpisodeRecorder if config.record else None,
            wrapper_kwargs={"sink": played} if config.record else None,
        ),
        norm_obs=True,
        norm_reward=True,
        clip_obs=10.0,
    )
    model = PPO(
        "MlpPolicy",
        venv,
        seed=config.seed,
        device="cpu",
        verbose=0,
        policy_kwargs={
            "log_std_init": -2.0,
            "ortho_init": False,
            "activation_fn": torch.nn.ReLU,
            "net_arch": {"pi": HIDDEN, "vf": HIDDEN},
        },
        **PPO_KWARGS,
    )
    if config.resume:
        _load_checkpoint(model, venv, checkpoint)
    last_snapshot = int(model.num_timesteps)
    versions = {
        "diffplan": diffplan.__version__,
        "stable-baselines3": version("stable-baselines3"),
        "gymnasium": version("gymnasium"),
        "mujoco": version("mujoco"),
        "torch": torch.__version__,
    }
    began = time.perf_counter()

    def training_info() -> dict:
        return {
            "num_timesteps": int(model.num_timesteps),
            "seed": config.seed,
            "wall_seconds": round(time.perf_counter() - began, 1),
            "versions": versions,
            "config": {k: str(v) for k, v in asdict(config).items()},
        }

    def snapshot() -> None:
        """The agent, then the episodes played since the last snapshot (the completion mark)."""
        nonlocal last_snapshot
        steps = int(model.num_timesteps)
        if not config.record or not played or steps == last_snapshot:
            return  # an interval in which no episode ended joins the next snapshot
        directory = snapshot_dir(config.out, steps)
        _export(model, venv, config, directory / "agent", training_info())
        write_replay(played, config.env, directory / "replay", (last_snapshot, steps))
        played.clear()
        last_snapshot = steps

    class Checkpoints(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % config.checkpoint_every == 0:
                snapshot()  # before the checkpoint: a resumed run rewrites it
                _save_checkpoint(model, venv, checkpoint)
                _export(model, venv, config, config.out, training_info())
            return True

    remaining = config.steps - model.num_timesteps
    if remaining > 0:
        model.learn(
            remaining,
            callback=Checkpoints(),
            reset_num_timesteps=not config.resume,
            progress_bar=config.progress,
        )
    snapshot()
    _save_checkpoint(model, venv, checkpoint)
    training = training_info()
    _export(model, venv, config, config.out, training)
    results = evaluate_agent(config.out, config.env, config.eval_episodes)
    write_model_card(config.out, config, training, results)
    with atomic_path(config.out / "evaluation.csv") as tmp, open(tmp, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["seed", "return", "length", "fell"])
        writer.writerows([10_000 + i, *row] for i, row in enumerate(results))
    print((config.out / "MODEL_CARD.md").read_text())
    return config.out
