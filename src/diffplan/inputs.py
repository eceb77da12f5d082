"""Reading files that diffplan did not necessarily write: every failure is one
``ValueError``/``FileNotFoundError`` naming the file, what is wrong and what to do.

* :func:`read_json_object`: a JSON object with required and allowed keys;
* :func:`read_safetensors`: tensors from a safetensors file, all finite;
* :func:`load_weights_only`: ``torch.load(weights_only=True)``, refusing pickled code.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file


def read_json_object(
    path: str | Path,
    *,
    required: Iterable[str] = (),
    optional: Iterable[str] | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """The JSON object in ``path`` (or in ``text``, read from ``path``), with every key of
    ``required``; when ``optional`` is given, no keys besides ``required`` and ``optional``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text() if text is None else text)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise ValueError(f"{path}: not valid JSON ({error}); restore or re-create it") from None
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: expected a JSON object, found {type(data).__name__}; restore or re-create it"
        )
    required = list(required)
    missing = [key for key in required if key not in data]
    if missing:
        raise ValueError(f"{path}: missing {', '.join(missing)}; restore or re-create the file")
    if optional is not None:
        extra = sorted(set(data) - set(required) - set(optional))
        if extra:
            allowed = ", ".join(sorted({*required, *optional}))
            raise ValueError(f"{path}: unknown keys {', '.join(extra)} (allowed: {allowed})")
    return data


def read_safetensors(path: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of the safetensors file ``path``; refuses corrupt files and non-finite
    values (NaN or infinite weights would only give NaN results later)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"{path}: not a readable safetensors file ({error}); it is corrupt or truncated: "
            "restore it or train again"
        ) from None
    bad = [
        name
        for name, tensor in state.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        raise ValueError(
            f"{path}: non-finite (NaN or infinite) values in {', '.join(sorted(bad)[:5])}; "
            "the weights are unusable: use an earlier checkpoint or train again"
        )
    return state


def load_weights_only(file: str | Path | IO[bytes], name: str | Path) -> Any:
    """``torch.load(file, weights_only=True)`` on the CPU; ``name`` is the file's name in
    messages. A file that needs more than tensors and plain containers is refused."""
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"{name} contains pickled code, which diffplan refuses to load (only tensors and "
            "plain containers are read); use a file from a source you can check"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        raise ValueError(f"{name}: unreadable ({type(error).__name__}: {error})") from None
