"""Named planner presets, kept as data in ``presets.json`` (as the RL Zoo keeps
hyperparameters): each is a description, what models it needs and the ``--planning.*``
options it sets. ``--planner NAME`` places a preset's options in front of the command
line's, so single options still override it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import tyro

from diffplan.config_file import config_flags
from diffplan.planning.config import PlanningConfig
from diffplan.tasks import find_task

PLANNER_FLAG = "--planner"
LIST_FLAG = "--list-planners"
DEFAULT_PRESET = "tracked"
PLANNER_HELP = (
    f"{PLANNER_FLAG} NAME: a named planner's --planning.* options (flags override them); "
    f"{LIST_FLAG} lists them."
)


@dataclass(frozen=True)
class Preset:
    """One named planner: its options and the models it needs."""

    name: str
    description: str
    planning: dict[str, Any]
    """``PlanningConfig`` options, nested as in ``--config`` files."""
    needs: dict[str, int] = field(default_factory=dict)
    """``{"inverse_dynamics": M}``: an inverse dynamics model trained with reach >= M."""

    def flags(self) -> list[str]:
        """The preset's options as ``--planning.*`` flags."""
        return config_flags({"planning": self.planning}, _Holder, Path(f"preset {self.name}"))

    def config(self) -> PlanningConfig:
        """The preset as a :class:`PlanningConfig` (unset options at their defaults)."""
        return tyro.cli(PlanningConfig, args=config_flags(self.planning, PlanningConfig, _SOURCE))

    def check(self, inverse_dynamics: Path | None) -> None:
        """Raise ValueError saying how to get a model the preset needs and was not given."""
        reach = self.needs.get("inverse_dynamics")
        if reach is not None and inverse_dynamics is None:
            raise ValueError(
                f"{PLANNER_FLAG} {self.name} needs an inverse dynamics model with reach >= "
                f"{reach}: pass --inverse-dynamics RUN (train one with `diffplan train-dynamics "
                f"--kind inverse --reach {reach}`), or pick another planner ({LIST_FLAG})"
            )


def within_task(planning: PlanningConfig, horizon: int, env_id: str | None) -> PlanningConfig:
    """A preset's ``planning`` for a model of ``horizon`` rows planning in ``env_id``: the
    temporal ensemble cut to ``horizon - 1`` plans and to the task table's
    ``defaults.temporal_ensemble`` (the tracked preset's 7 is H - 1 at H = 8; HalfCheetah
    plans with H = 4 and its table allows 1)."""
    task = find_task(env_id)
    most = None if task is None else task.temporal_ensemble
    limit = horizon - 1 if most is None else max(1, min(horizon - 1, most))
    if planning.temporal_ensemble <= limit:
        return planning
    return replace(planning, temporal_ensemble=limit)


@dataclass
class _Holder:
    planning: PlanningConfig


_SOURCE = Path("diffplan/planning/presets.json")


def presets() -> dict[str, Preset]:
    """Every preset of ``presets.json`` by name."""
    text = resources.files("diffplan.planning").joinpath("presets.json").read_text()
    return {name: Preset(name, **entry) for name, entry in json.loads(text).items()}


def find_preset(name: str) -> Preset:
    """The preset called ``name``; ValueError naming the valid ones otherwise."""
    known = presets()
    if name not in known:
        raise ValueError(f"{PLANNER_FLAG} {name!r}: no such planner; choose one of {sorted(known)}")
    return known[name]


def listing() -> str:
    """One line per preset: name and description."""
    return "\n".join(f"{p.name:<8} {p.description}" for p in presets().values())


def apply_planner_flag(args: list[str]) -> tuple[str | None, list[str]]:
    """``(NAME, args)`` with ``--planner NAME`` replaced by the preset's flags in front."""
    for i, arg in enumerate(args):
        if arg == PLANNER_FLAG or arg.startswith(PLANNER_FLAG + "="):
            if arg == PLANNER_FLAG:
                if i + 1 == len(args):
                    raise ValueError(f"{PLANNER_FLAG} needs a name; {LIST_FLAG} lists them")
                name, rest = args[i + 1], args[:i] + args[i + 2 :]
            else:
                name, rest = arg.split("=", 1)[1], args[:i] + args[i + 1 :]
            return name, find_preset(name).flags() + rest
    return None, args
