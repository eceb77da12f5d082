"""Atomic file and directory writes: a reader never sees a half-written file.

Everything is first written next to its destination under a temporary name and
then moved into place with :func:`os.replace`, which is atomic on POSIX.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_path(destination: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file path that replaces ``destination`` on success, removed on error."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the permissions of a plain open()
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, destination)
    finally:
        tmp_path.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_directory(destination: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty temporary directory that becomes ``destination`` on success.

    An existing ``destination`` is refused unless ``overwrite``; it is then replaced
    only after the new directory is complete, so a failure leaves the old one intact.
    """
    destination = Path(destination)
    if destination.exists() and not overwrite:
        raise FileExistsError(
            f"{destination} already exists; choose another path or pass --overwrite"
        )
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".tmp", dir=destination.parent)
    )
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700 directories
        if destination.exists():
            old = _set_aside(destination)
            os.replace(tmp, destination)
            shutil.rmtree(old)
        else:
            os.replace(tmp, destination)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _set_aside(directory: Path) -> Path:
    """Move ``directory`` into a new hidden ``.NAME.XXXXXXXX.old`` beside it; returns that."""
    old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".old", dir=directory.parent))
    os.replace(directory, old / "previous")
    return old


def remove_directory(directory: str | os.PathLike) -> None:
    """Delete ``directory`` so that it never stands half-deleted under its name: it is moved
    aside first (a kill leaves a hidden ``.old`` folder that the next start removes)."""
    shutil.rmtree(_set_aside(Path(directory)))


def write_json(destination: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    with atomic_path(destination) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
