"""Output folders: what kind each one is, one writer at a time, no stale temporaries.

Every command that writes a folder calls :func:`output_folder` first. It

* locks the folder with ``.<name>.lock`` beside it (JSON: pid, host, command); a second
  writer is refused at once with the first one's pid, and a lock whose process is gone
  (same host) is taken over with a message;
* refuses a folder that holds another command's output (a dataset, a training run, an
  evaluation, ...) and, unless the command may reuse it, one of its own kind without
  ``--overwrite``;
* deletes temporaries left by a killed writer (``.NAME.XXXXXXXX.tmp`` / ``.old`` from
  :mod:`diffplan.atomic`): holding the lock, no live process can own them;
* records the folder's kind in ``.diffplan-folder`` (datasets are known by their files).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

MARKER = ".diffplan-folder"
TRAINING = ("train", "train-value", "train-dynamics", "finetune")
# Folders from before markers, known by a file only that command writes.
_SIGNATURES = {
    "data/metadata.json": "collect",
    "data/main_data.hdf5": "collect",
    "diffusion/checkpoints": "run",
    "checkpoints": "training run",
    "selection.json": "select-checkpoint",
    "metrics.json": "evaluate",
    "MODEL_CARD.md": "train-agent",
}
# mkdtemp/mkstemp names of diffplan.atomic: ".<name>.<8 random characters>.tmp|.old"
_TEMPORARY = r"\.{name}\.[a-z0-9_]{{8}}\.(tmp|old)"
Existing = Literal["refuse", "replace", "reuse"]


def folder_kind(path: Path) -> str | None:
    """The command whose output ``path`` holds (``"collect"`` for datasets, ``"training
    run"`` for runs from before markers, ``"unknown"`` for foreign files), None if empty."""
    marker = path / MARKER
    if marker.is_file():
        try:
            return str(json.loads(marker.read_text())["kind"])
        except (ValueError, KeyError, TypeError):
            return "unknown"
    for signature, kind in _SIGNATURES.items():
        if (path / signature).exists():
            return kind
    visible = [p for p in path.iterdir() if not p.name.startswith(".")] if path.is_dir() else []
    return "unknown" if visible or (path.exists() and not path.is_dir()) else None


def _describe(kind: str) -> str:
    if kind == "collect":
        return "a dataset (diffplan collect)"
    if kind == "unknown":
        return "files that diffplan did not write"
    if kind == "training run":
        return "a training run"
    return f"the output of `diffplan {kind}`"


def _check_kind(out: Path, command: str, existing: Existing, option: str) -> bool:
    """Refuse ``out`` if it holds another kind, or this kind where ``existing`` says so;
    returns whether it holds output of this kind."""
    kind = folder_kind(out)
    if kind is None:
        return False
    same = kind == command or (kind == "training run" and command in TRAINING)
    if not same:
        raise FileExistsError(
            f"{option} {out} holds {_describe(kind)}, not the output of `diffplan {command}`; "
            f"choose another {option} (a new or empty folder)"
        )
    if existing == "refuse":
        raise FileExistsError(
            f"{option} {out} already holds the output of `diffplan {command}`; pass --overwrite "
            f"to replace it or choose another {option}"
        )
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lock_path(out: Path) -> Path:
    """The lock file of ``out``: ``.<name>.lock`` beside it (``out`` resolved, so that
    ``--out .`` has a name)."""
    out = out.resolve()
    return out.parent / f".{out.name}.lock"


@contextlib.contextmanager
def folder_lock(out: Path, command: str) -> Iterator[None]:
    """Hold ``out``'s lock (see the module docstring); released on exit, errors included."""
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command}
    draft = path.with_name(f"{path.name}.{os.getpid()}")
    draft.write_text(json.dumps(me) + "\n")
    try:
        while True:
            try:
                os.link(draft, path)  # atomic: the lock appears with its content
                break
            except FileExistsError:
                _take_over_if_stale(path, out)
    finally:
        draft.unlink(missing_ok=True)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def _take_over_if_stale(path: Path, out: Path) -> None:
    """Remove ``path`` if its owner is gone; otherwise refuse with the owner's pid."""
    try:
        owner = json.loads(path.read_text())
        pid, host = int(owner["pid"]), str(owner["host"])
    except FileNotFoundError:
        return  # released meanwhile: try again
    except (ValueError, KeyError, TypeError) as error:
        raise FileExistsError(
            f"{path}: unreadable lock of {out} ({error}); if no diffplan command writes "
            f"{out}, delete {path}"
        ) from None
    if host == socket.gethostname() and not _alive(pid):
        print(
            f"diffplan: {out}: taking over the lock of pid {pid} ({owner.get('command')}), "
            "which is no longer running",
            file=sys.stderr,
        )
        path.unlink(missing_ok=True)
        return
    raise FileExistsError(
        f"{out} is being written by pid {pid} on {host} (diffplan {owner.get('command')}); "
        f"wait for it to finish or choose another output folder (if that process is gone, "
        f"delete {path})"
    )


def clean_temporaries(out: Path) -> list[Path]:
    """Delete the temporaries a killed writer left for ``out``: ``.OUT.*.tmp`` beside it and
    ``.*.tmp`` / ``.*.old`` in it and in its ``checkpoints/``. Call it holding the lock."""
    out = out.resolve()
    beside = re.compile(_TEMPORARY.format(name=re.escape(out.name)))
    inside = re.compile(_TEMPORARY.format(name=".+"))
    found = [p for p in out.parent.glob(f".{out.name}.*") if beside.fullmatch(p.name)]
    for folder in (out, out / "checkpoints"):
        if folder.is_dir():
            found += [p for p in folder.iterdir() if inside.fullmatch(p.name)]
    for path in found:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    if found:
        print(f"diffplan: removed {len(found)} temporaries of an interrupted run", file=sys.stderr)
    return found


@contextlib.contextmanager
def output_folder(
    out: Path,
    command: str,
    *,
    existing: Existing = "refuse",
    option: str = "--out",
    marker: bool = True,
) -> Iterator[Path]:
    """Claim ``out`` for ``diffplan command`` while the block runs (module docstring).

    ``existing``: what to do with a folder of this command's kind: refuse it, ``replace``
    it (its contents are deleted first when ``marker``; datasets are replaced atomically
    by their writer) or ``reuse`` it (resume). ``marker``: write ``.diffplan-folder``.
    Under torchrun only rank 0 claims the folder.
    """
    out = Path(out)
    if int(os.environ.get("RANK", "0")) != 0:
        yield out
        return
    with folder_lock(out, command):
        holds = _check_kind(out, command, existing, option)
        clean_temporaries(out)
        if marker:
            if holds and existing == "replace":
                for entry in out.iterdir():
                    shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            created = not out.exists()
            out.mkdir(parents=True, exist_ok=True)
            (out / MARKER).write_text(json.dumps({"kind": command}) + "\n")
        try:
            yield out
        except BaseException:
            if marker and not holds and [p.name for p in out.iterdir()] == [MARKER]:
                # failed before writing anything: leave no folder that needs --overwrite
                (out / MARKER).unlink()
                if created:
                    out.rmdir()
            raise
