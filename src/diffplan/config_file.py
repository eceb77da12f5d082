"""``--config FILE``: a command's options from YAML or a run's own ``config.json``.

The file's values become the command's defaults and flags on the command line override
them: the file is turned into flags placed before the command line's own, and tyro
(where the last of repeated flags wins) parses both, so its checks of types and choices
apply to the file's values too. A saved ``config.json`` (training run, evaluation,
checkpoint or ``results.json``) keeps the options under ``"config"``; that part is read,
so the file replays the run. Keys that are not options of the command are refused.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

CONFIG_FLAG = "--config"
HELP = "--config FILE: defaults from YAML or a run's config.json; flags override them."


def split_config_flag(args: list[str]) -> tuple[Path | None, list[str]]:
    """``(FILE, the other args)`` from ``--config FILE`` or ``--config=FILE`` in ``args``."""
    for i, arg in enumerate(args):
        if arg == CONFIG_FLAG:
            if i + 1 == len(args):
                raise ValueError(f"{CONFIG_FLAG} needs a file: {CONFIG_FLAG} FILE")
            return Path(args[i + 1]), args[:i] + args[i + 2 :]
        if arg.startswith(CONFIG_FLAG + "="):
            return Path(arg.split("=", 1)[1]), args[:i] + args[i + 1 :]
    return None, args


def read_config_file(path: Path) -> dict[str, Any]:
    """The options in ``path`` (YAML or JSON; a saved run's ``"config"`` part)."""
    if not path.is_file():
        raise FileNotFoundError(f"{CONFIG_FLAG} {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())  # JSON is YAML; safe_load builds no objects
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        problem = str(error).splitlines()[0]
        raise ValueError(f"{CONFIG_FLAG} {path}: not YAML or JSON ({problem})") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{CONFIG_FLAG} {path}: expected a mapping of option names to values, "
            f"got {type(data).__name__}"
        )
    saved = data.get("config")
    if isinstance(saved, dict) and ("git_revision" in data or "kind" in data):
        return saved  # a run's config.json (or results.json): the options it ran with
    return data


def config_flags(
    options: Mapping[str, Any], cls: type, source: Path, prefix: str = ""
) -> list[str]:
    """``options`` of dataclass ``cls`` as command-line flags (nested dataclasses dotted).

    Raises ValueError naming ``source`` and the valid keys for a key that is no option.
    """
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    flags: list[str] = []
    for key, value in options.items():
        name = str(key).replace("-", "_")
        if name not in fields:
            raise ValueError(
                f"{CONFIG_FLAG} {source}: unknown option {prefix}{key!s}; valid keys"
                f"{' of ' + prefix.rstrip('.') if prefix else ''}: {', '.join(sorted(fields))}"
            )
        flag = "--" + (prefix + name).replace("_", "-")
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ValueError(
                    f"{CONFIG_FLAG} {source}: {prefix}{name} must be a mapping of its options"
                )
            flags += config_flags(value, hint, source, f"{prefix}{name}.")
        elif isinstance(value, bool):
            flags.append(flag if value else "--" + (prefix + "no_" + name).replace("_", "-"))
        elif isinstance(value, (list, tuple)):
            flags += [flag, *map(str, value)]
        elif isinstance(value, dict):
            raise ValueError(f"{CONFIG_FLAG} {source}: {prefix}{name} takes a value, not a mapping")
        else:
            flags += [flag, "None" if value is None else str(value)]
    return flags


def apply_config_file(args: list[str], cls: type) -> list[str]:
    """``args`` with a ``--config FILE`` replaced by the file's options as flags in front."""
    path, rest = split_config_flag(args)
    if path is None:
        return args
    return config_flags(read_config_file(path), cls, path) + rest
