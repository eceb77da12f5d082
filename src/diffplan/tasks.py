"""The task table: what diffplan knows about each MuJoCo locomotion task, kept as data.

``tasks.json`` (package data) holds one entry per task family (``walker2d``,
``hopper``, ``halfcheetah``): the gymnasium id, dimensions, D4RL reference scores,
whether and how the task can fall, the defaults that differ per task (planning
horizon, termination penalty), Diffuser's own settings and the agents known to suit
it. :func:`task_for` finds the entry of any version of an env id
(``Hopper-v3``/``-v4``/``-v5`` -> ``hopper``), so commands take ``--env`` and look
everything else up here instead of hard-coding one walker.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Literal

Quality = Literal["expert", "medium", "medium-replay", "medium-expert"]
QUALITIES: tuple[Quality, ...] = ("expert", "medium", "medium-replay", "medium-expert")
"""D4RL's dataset qualities, in its order (``diffplan make-datasets`` builds them)."""

PACKAGED_AGENTS = Path(str(files("diffplan") / "assets"))
"""Where packaged agents live: ``PACKAGED_AGENTS / NAME`` (agent.json + policy.safetensors)."""


@dataclass(frozen=True)
class KnownAgent:
    """An agent known to suit a task: packaged with diffplan, or named by where it is published."""

    name: str
    packaged: bool
    note: str

    @property
    def path(self) -> Path | None:
        """The packaged agent's directory; None for agents published elsewhere."""
        return PACKAGED_AGENTS / self.name if self.packaged else None


@dataclass(frozen=True)
class Task:
    """One row of the task table (see ``tasks.json``'s ``_about``)."""

    family: str
    env_id: str
    obs_dim: int
    act_dim: int
    max_episode_steps: int
    ref_min: float
    ref_max: float
    can_fall: bool
    alive_bonus: float
    """Reward per step for staying healthy (gymnasium's healthy_reward): a standing agent's."""
    fall: str
    horizon: int
    termination_penalty: float
    temporal_ensemble: int | None
    """The most plans a preset's temporal ensemble averages on this task (None: H - 1)."""
    goal_noise: float
    """The inverse dynamics model's default goal noise (train-dynamics --goal-noise)."""
    diffuser_horizon: int
    agents: tuple[KnownAgent, ...]
    published_d4rl: dict[str, dict[str, float]]
    """Published D4RL scores (Diffuser's paper, D4RL -v2 data): method -> quality -> score."""

    @property
    def default_agent(self) -> Path | None:
        """The first packaged agent's directory, or None when diffplan ships none."""
        return next((a.path for a in self.agents if a.packaged), None)

    def normalized_score(self, total_return: float) -> float:
        """D4RL's normalised score ``100 * (R - min) / (max - min)``."""
        return 100.0 * (total_return - self.ref_min) / (self.ref_max - self.ref_min)

    def agent_hint(self) -> str:
        """One line naming the agents known to suit the task (for error messages)."""
        return "; ".join(
            f"{a.name} ({'packaged: ' + str(a.path) if a.packaged else a.note})"
            for a in self.agents
        )


def _task(family: str, row: dict) -> Task:
    return Task(
        family=family,
        env_id=row["env_id"],
        obs_dim=int(row["obs_dim"]),
        act_dim=int(row["act_dim"]),
        max_episode_steps=int(row["max_episode_steps"]),
        ref_min=float(row["d4rl_reference"]["min"]),
        ref_max=float(row["d4rl_reference"]["max"]),
        can_fall=bool(row["can_fall"]),
        alive_bonus=float(row["alive_bonus"]),
        fall=row["fall"],
        horizon=int(row["defaults"]["horizon"]),
        termination_penalty=float(row["defaults"]["termination_penalty"]),
        temporal_ensemble=row["defaults"].get("temporal_ensemble"),
        goal_noise=float(row["defaults"]["goal_noise"]),
        diffuser_horizon=int(row["diffuser"]["horizon"]),
        agents=tuple(KnownAgent(**agent) for agent in row["agents"]),
        published_d4rl={m: dict(q) for m, q in row.get("published_d4rl", {}).items()},
    )


@cache
def _table() -> tuple[str, dict[str, Task]]:
    raw = json.loads((files("diffplan") / "tasks.json").read_text())
    return raw["default"], {name: _task(name, row) for name, row in raw["tasks"].items()}


def tasks() -> dict[str, Task]:
    """Every task of the table, by family."""
    return dict(_table()[1])


def default_task() -> Task:
    """The task commands use when ``--env`` is not given (Walker2d-v5)."""
    default, table = _table()
    return table[default]


DEFAULT_ENV = default_task().env_id
"""The default ``--env`` of every command."""


def family(env_id: str) -> str:
    """``Walker2d-v5`` -> ``walker2d``; D4RL names (``hopper-medium-v2``) and Minari ids
    (``mujoco/hopper/expert-v0``, the family in the middle) likewise."""
    parts = env_id.split("/")
    name = parts[-2] if len(parts) == 3 else parts[-1]
    return name.split("-")[0].lower()


def find_task(env_id: str | None) -> Task | None:
    """The task of ``env_id`` (any version, any case), or None when the table lacks it."""
    return None if env_id is None else _table()[1].get(family(env_id))


def task_for(env_id: str) -> Task:
    """The task of ``env_id``; ValueError naming the known tasks when the table lacks it."""
    task = find_task(env_id)
    if task is None:
        known = ", ".join(t.env_id for t in _table()[1].values())
        raise ValueError(
            f"--env {env_id}: not in diffplan's task table (known: {known}); add it to "
            "diffplan/tasks.json"
        )
    return task


def require_agent(agent: Path | None, env_id: str) -> Path:
    """``agent`` if given, else the task's packaged agent; FileNotFoundError naming the
    agents known to suit the task when there is none."""
    if agent is not None:
        return agent
    task = task_for(env_id)
    if task.default_agent is None or not task.default_agent.exists():
        raise FileNotFoundError(
            f"--agent: diffplan ships no agent for {env_id}; pass --agent PATH (an SB3 zip or "
            f"a `diffplan train-agent` directory). Known to suit it: {task.agent_hint()}"
        )
    return task.default_agent
