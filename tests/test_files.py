"""bnlib.lab.files: a file is replaced whole or not at all, and no temporary file is left behind."""

import pytest

from bnlib.lab.files import atomic_write_bytes, atomic_write_text


def test_a_write_replaces_the_file_whole_and_creates_its_folder(tmp_path):
    path = tmp_path / "new" / "executions.json"
    atomic_write_text(path, "first")
    atomic_write_text(path, "second, longer")
    assert path.read_text() == "second, longer"
    assert [p.name for p in path.parent.iterdir()] == ["executions.json"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    import os

    path = tmp_path / "metrics.json"
    atomic_write_bytes(path, b"old")

    def full_disk(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
