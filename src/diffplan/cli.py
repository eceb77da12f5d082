"""The ``diffplan`` command line: one typed dataclass of options per subcommand.

Each subcommand's options live beside the code that runs it; this module only
maps subcommand names to ``(config class, function)`` pairs.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Union

import tyro

from diffplan.commands import JOB_COMMANDS
from diffplan.config_file import HELP as CONFIG_FILE_HELP
from diffplan.config_file import apply_config_file
from diffplan.planning.presets import (
    LIST_FLAG,
    PLANNER_HELP,
    apply_planner_flag,
    find_preset,
    listing,
)
from diffplan.sweep import SweepConfig, sweep

# name -> (options dataclass, function running it); new subcommands go in diffplan.commands.
COMMANDS: dict[str, tuple[type, Callable[[Any], Any]]] = {
    **JOB_COMMANDS,
    "sweep": (SweepConfig, sweep),
}


# Commands that take no --config FILE (they neither train nor evaluate; sweep reads a grid).
WITHOUT_CONFIG_FILE = {"info", "pool", "report", "sweep"}
# Commands that take --planner NAME (a preset of their --planning.* options).
WITH_PLANNER = {"evaluate", "select-checkpoint"}


def _description(name: str, cls: type) -> str:
    """The command's help text: its options' docstring, and --config where it applies."""
    text = inspect.cleandoc(cls.__doc__ or "")
    text = text if name in WITHOUT_CONFIG_FILE else f"{text}\n{CONFIG_FILE_HELP}"
    return f"{text}\n{PLANNER_HELP}" if name in WITH_PLANNER else text


def main(argv: Sequence[str] | None = None) -> None:
    """Parse ``argv`` (default: ``sys.argv[1:]``) and run the chosen subcommand."""
    subcommands = Union[  # noqa: UP007 - tyro needs a runtime Union of Annotated types
        tuple(
            Annotated[cls, tyro.conf.subcommand(name, description=_description(name, cls))]
            for name, (cls, _) in COMMANDS.items()
        )
    ]
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in COMMANDS and args[0] not in WITHOUT_CONFIG_FILE:
            args[1:] = apply_config_file(args[1:], COMMANDS[args[0]][0])
        planner = None
        if args and args[0] in WITH_PLANNER:
            if LIST_FLAG in args:
                print(listing())
                return
            planner, args[1:] = apply_planner_flag(args[1:])
        config = tyro.cli(subcommands, args=args, prog="diffplan")
        if planner is not None and hasattr(config, "inverse_dynamics"):
            find_preset(planner).check(config.inverse_dynamics)
        if planner is not None and hasattr(config, "preset"):
            config = dataclasses.replace(config, preset=planner)
        run = next(function for cls, function in COMMANDS.values() if type(config) is cls)
        run(config)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        # Expected user errors: one clear line, no traceback.
        print(f"diffplan: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
