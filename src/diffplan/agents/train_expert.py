"""``diffplan train-agent``: train an agent with stable-baselines3 and export it.

diffplan's main job needs data that a fresh machine can make offline; this command trains
the agent that makes it: PPO (:mod:`diffplan.agents.ppo`, the packaged expert's) or SAC
(:mod:`diffplan.agents.sac`, D4RL's for its medium agents), exported in diffplan's own
safetensors + JSON format (:mod:`diffplan.agents.gaussian_mlp`) with a model card.
Checkpoints (nothing pickled) allow ``--resume``.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Literal

import gymnasium as gym
import numpy as np
import torch

import diffplan
from diffplan.agents import ppo, sac
from diffplan.agents.experience import record_episodes
from diffplan.agents.loading import load_agent
from diffplan.agents.replay import EpisodeRecorder, snapshot_dir, write_replay
from diffplan.atomic import atomic_path
from diffplan.data.episodes import Episode
from diffplan.inputs import read_json_object
from diffplan.outputs import output_folder
from diffplan.tasks import DEFAULT_ENV

Algorithm = Literal["ppo", "sac"]


@dataclass
class TrainAgentConfig:
    """Train an agent (stable-baselines3 PPO or SAC) and export it as a diffplan agent."""

    out: Path
    """Output directory: agent (policy.safetensors, agent.json, MODEL_CARD.md), checkpoint/,
    monitor CSV."""
    env: str = DEFAULT_ENV
    """Gymnasium environment id."""
    steps: int = 2_000_000
    """Environment steps of training."""
    algorithm: Algorithm = "ppo"
    """'ppo': the packaged Walker2d expert's recipe; 'sac': D4RL's algorithm for its medium
    agents."""
    seed: int = 0
    """Seed of the environment, the policy and the algorithm's sampling."""
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


ALGORITHMS = {"ppo": ppo, "sac": sac}


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
    algorithm = ALGORITHMS[config.algorithm]
    action = (
        "tanh of the Gaussian's mean, rescaled to the action bounds"
        if config.algorithm == "sac"
        else "the Gaussian's mean on normalised observations, clipped to the action bounds"
    )
    lines = [
        f"# {algorithm.NAME} agent for {config.env}",
        "",
        f"Trained by `diffplan train-agent` with stable-baselines3 {algorithm.NAME} "
        "(hyperparameters below).",
        "",
        "| | |",
        "|---|---|",
        f"| command | `diffplan train-agent --algorithm {config.algorithm} --env {config.env} "
        f"--steps {config.steps} --seed {config.seed} --out {config.out}` |",
        f"| environment steps | {training['num_timesteps']} |",
        f"| seed | {config.seed} |",
        f"| wall time | {training['wall_seconds'] / 60:.1f} min |",
        f"| hyperparameters | {algorithm.HYPERPARAMETERS} |",
        f"| versions | {json.dumps(training['versions'])} |",
        f"| return, {len(results)} deterministic episodes (seeds 10000+) | "
        f"{returns.mean():.1f} ± {returns.std():.1f} (min {returns.min():.1f}) |",
        f"| falls | {falls} of {len(results)} |",
        "",
        f"Deterministic action: {action}. Weights: `policy.safetensors`; everything else: "
        "`agent.json`.",
        "",
    ]
    with atomic_path(directory / "MODEL_CARD.md") as tmp:
        tmp.write_text("\n".join(lines))


def _require_algorithm(checkpoint: Path, name: str) -> None:
    """Refuse to resume a checkpoint of another algorithm (checkpoints before SAC: PPO)."""
    if not (checkpoint / "state.json").is_file():
        raise FileNotFoundError(f"--resume: no checkpoint in {checkpoint}")
    found = read_json_object(checkpoint / "state.json").get("algorithm", ppo.NAME)
    if found != name:
        raise ValueError(
            f"--resume: {checkpoint} holds a {found} checkpoint, not {name}: resume it with "
            f"--algorithm {str(found).lower()}, or train into another --out"
        )


def train_agent(config: TrainAgentConfig) -> Path:
    """Run ``diffplan train-agent``; returns the agent directory (``config.out``)."""
    with output_folder(config.out, "train-agent", existing="reuse"):
        return _train_agent(config)


def _train_agent(config: TrainAgentConfig) -> Path:
    try:
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.env_util import make_vec_env
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
    algorithm = ALGORITHMS[config.algorithm]
    if config.resume:
        _require_algorithm(checkpoint, algorithm.NAME)
    model, venv = algorithm.build(
        make_vec_env(
            config.env,
            n_envs=1,
            seed=config.seed,
            monitor_dir=str(config.out / "monitor"),
            monitor_kwargs={"override_existing": not config.resume},  # a resumed run appends
            wrapper_class=EpisodeRecorder if config.record else None,
            wrapper_kwargs={"sink": played} if config.record else None,
        ),
        config.seed,
    )
    if config.resume:
        algorithm.load_checkpoint(model, venv, checkpoint)
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
        algorithm.export(model, venv, config.env, directory / "agent", training_info())
        write_replay(played, config.env, directory / "replay", (last_snapshot, steps))
        played.clear()
        last_snapshot = steps

    class Checkpoints(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % config.checkpoint_every == 0:
                snapshot()  # before the checkpoint: a resumed run rewrites it
                algorithm.save_checkpoint(model, venv, checkpoint)
                algorithm.export(model, venv, config.env, config.out, training_info())
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
    algorithm.save_checkpoint(model, venv, checkpoint)
    training = training_info()
    algorithm.export(model, venv, config.env, config.out, training)
    results = evaluate_agent(config.out, config.env, config.eval_episodes)
    write_model_card(config.out, config, training, results)
    with atomic_path(config.out / "evaluation.csv") as tmp, open(tmp, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["seed", "return", "length", "fell"])
        writer.writerows([10_000 + i, *row] for i, row in enumerate(results))
    print((config.out / "MODEL_CARD.md").read_text())
    return config.out
