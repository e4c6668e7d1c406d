"""Release archives: the same directory packs to the same bytes; unsafe content is refused."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from fleetplane.artifacts.archive import ArchiveError, pack, unpack


def _tree(root: Path) -> Path:
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "run").write_text("#!/bin/sh\n")
    (root / "bin" / "run").chmod(0o750)
    (root / "model.npz").write_bytes(b"\x00" * 1000)
    return root


def test_packing_twice_gives_the_same_bytes_whatever_the_times_and_modes(tmp_path: Path) -> None:
    first, second = io.BytesIO(), io.BytesIO()
    files = pack(_tree(tmp_path / "a"), first)
    tree = _tree(tmp_path / "b")
    os.utime(tree / "model.npz", (1, 1))
    (tree / "model.npz").chmod(0o600)
    pack(tree, second)
    assert first.getvalue() == second.getvalue()
    assert [(f.path, f.size, f.executable) for f in files] == [
        ("bin/run", 10, True), ("model.npz", 1000, False)]


def test_unpacked_release_has_the_files_and_normalised_modes(tmp_path: Path) -> None:
    archive = tmp_path / "r.tar.gz"
    with archive.open("wb") as out:
        pack(_tree(tmp_path / "src"), out)
    unpack(archive, tmp_path / "out")
    assert (tmp_path / "out" / "model.npz").read_bytes() == b"\x00" * 1000
    assert (tmp_path / "out" / "bin" / "run").stat().st_mode & 0o777 == 0o755


def test_symlinks_and_empty_directories_are_not_packed(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "a")
    (tree / "link").symlink_to("/etc/passwd")
    with pytest.raises(ArchiveError, match="only regular files"):
        pack(tree, io.BytesIO())
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArchiveError, match="no files"):
        pack(tmp_path / "empty", io.BytesIO())


def test_an_archive_escaping_its_directory_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as out:
        data = b"owned"
        info = tarfile.TarInfo("../escaped")
        info.size = len(data)
        out.addfile(info, io.BytesIO(data))
    with pytest.raises(ArchiveError, match="cannot unpack"):
        unpack(archive, tmp_path / "out")
    assert not (tmp_path / "escaped").exists()
