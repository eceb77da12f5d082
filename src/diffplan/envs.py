"""Environment ids: which ones a file may name, and which task family an id belongs to.

An id read from a file goes through :func:`checked_env_id`: it must be a plain id registered
with gymnasium, because ``gym.make("module:Env")`` imports ``module`` (code named by the
file). Only an id given on the command line may use that form.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

import gymnasium as gym

_VERSION = re.compile(r"-v\d+$")


def env_family(env_id: str) -> str:
    """The task an id belongs to, whatever its version: ``"Walker2d-v3"`` -> ``"Walker2d"``."""
    return _VERSION.sub("", env_id.rsplit(":", 1)[-1].rsplit("/", 1)[-1])


def checked_env_id(env_id: object, source: str | Path) -> str:
    """``env_id`` as read from ``source`` (a file), if it is a plain registered gymnasium id."""
    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"{source}: env id {env_id!r} is not a gymnasium id string")
    if ":" in env_id:
        raise ValueError(
            f"{source}: env id {env_id!r} names a module to import; ids read from files must be "
            "plain registered ids such as Walker2d-v5 (only a command-line --env may name a module)"
        )
    if env_id not in gym.registry:
        close = difflib.get_close_matches(env_id, list(gym.registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"{source}: env id {env_id!r} is not a registered gymnasium id{hint}")
    return env_id


def make_env(env_id: str, **kwargs: object) -> gym.Env:
    """``gym.make(env_id, **kwargs)``; an unknown id (or, for ``module:Env`` ids given on the
    command line, a module that does not import) is a ``ValueError`` naming close ids."""
    try:
        return gym.make(env_id, **kwargs)
    except (gym.error.Error, ImportError, AttributeError) as error:
        close = difflib.get_close_matches(env_id.rsplit(":", 1)[-1], list(gym.registry), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"--env {env_id}: cannot make this environment ({error}){hint}") from None


def check_dims(env_id: str, obs_dim: int, act_dim: int, source: str | Path) -> None:
    """Refuse a model of ``source``, trained on data of these dims, for ``env_id``'s spaces."""
    env = make_env(env_id)
    obs_shape, act_shape = env.observation_space.shape, env.action_space.shape
    env.close()
    if obs_shape != (obs_dim,) or act_shape != (act_dim,):
        raise ValueError(
            f"{source}: the model was trained on data with obs {obs_dim} and actions {act_dim}; "
            f"it cannot plan in {env_id} (obs {obs_shape}, actions {act_shape})"
        )


def make_render_env(env_id: str, width: int, height: int) -> gym.Env:
    """An ``rgb_array`` environment. OpenGL is chosen here, only when something is rendered:
    ``MUJOCO_GL`` as set by the user, else ``egl`` on a machine without a display (set before
    OpenGL is first imported, so a missing libEGL never breaks environments that don't render)."""
    if "MUJOCO_GL" not in os.environ and not os.environ.get("DISPLAY"):
        os.environ["MUJOCO_GL"] = "egl"
        os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    return make_env(env_id, render_mode="rgb_array", width=width, height=height)


def same_task(agent_env: str, env_id: str, source: str | Path, *, force: bool = False) -> None:
    """Refuse an agent trained on ``agent_env`` (from ``source``) for another task than
    ``env_id``; versions of one task may differ. ``force`` skips the check."""
    if not force and env_family(agent_env) != env_family(env_id):
        raise ValueError(
            f"{source}: the agent was trained on {agent_env}, not a version of {env_id}; "
            "pick an agent for this task, or pass --force-env to use it anyway"
        )
