"""Atomic writes: all or nothing, with ordinary file permissions."""

from __future__ import annotations

import os
import stat

import pytest

from diffplan.atomic import atomic_directory, atomic_path, write_json


def test_atomic_file_gets_the_permissions_of_a_plain_open(tmp_path):
    reference = tmp_path / "plain.txt"
    reference.write_text("x")
    target = tmp_path / "atomic.txt"
    with atomic_path(target) as temporary:
        temporary.write_text("y")
    assert stat.S_IMODE(os.stat(target).st_mode) == stat.S_IMODE(os.stat(reference).st_mode)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"old": 1})
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("crash while writing")
    assert target.read_text().strip().startswith("{") and '"old": 1' in target.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_atomic_directory_gets_the_permissions_of_a_plain_mkdir(tmp_path):
    (tmp_path / "plain").mkdir()
    with atomic_directory(tmp_path / "atomic") as temporary:
        (temporary / "file").write_text("x")
    mode = stat.S_IMODE(os.stat(tmp_path / "atomic").st_mode)
    assert mode == stat.S_IMODE(os.stat(tmp_path / "plain").st_mode)
