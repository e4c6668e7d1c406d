"""A directory as one deterministic archive, and back.

The same directory always packs to the same bytes — entries sorted, owner
0:0, modification time 0, modes normalised to 0644/0755, gzip without a
name or time in its header — so the sha256 of the archive names the
release (``fleetplane artifact push`` twice is one blob). Only regular files
and directories are packed: a symlink or device could point outside the
release once unpacked. Unpacking uses tarfile's ``data`` filter, which
refuses absolute paths, ``..`` and links, whatever the archive holds.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from fleetplane.errors import FleetplaneError

READ_BYTES = 1024 * 1024


class ArchiveError(FleetplaneError):
    """A directory that cannot be packed, or an archive that cannot be unpacked safely."""


@dataclass(frozen=True)
class FileEntry:
    path: str
    size: int
    sha256: str
    executable: bool

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256,
                "executable": self.executable}


def walk(root: Path) -> Iterator[Path]:
    """Every file and directory under ``root``, sorted, parents first; errors on anything else."""
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        mode = entry.lstat().st_mode
        if stat.S_ISDIR(mode):
            yield entry
            yield from walk(entry)
        elif stat.S_ISREG(mode):
            yield entry
        else:
            raise ArchiveError(
                f"{entry}: only regular files and directories can be packed (this is a "
                "symlink, socket or device); copy the target into the directory instead"
            )


def pack(root: Path, out: IO[bytes]) -> list[FileEntry]:
    """Write ``root`` as a deterministic .tar.gz to ``out``; the files it holds."""
    if not root.is_dir():
        raise ArchiveError(f"{root}: not a directory; pass the directory holding the release")
    files: list[FileEntry] = []
    with (
        gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for path in walk(root):
            name = path.relative_to(root).as_posix()
            info = tarfile.TarInfo(name)
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            executable = bool(path.stat().st_mode & stat.S_IXUSR)
            if path.is_dir():
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                archive.addfile(info)
                continue
            info.size = path.stat().st_size
            info.mode = 0o755 if executable else 0o644
            with path.open("rb") as handle:
                archive.addfile(info, handle)
            files.append(FileEntry(name, info.size, file_digest(path), executable))
    if not files:
        raise ArchiveError(f"{root}: the directory holds no files; nothing to push")
    return files


def file_digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(READ_BYTES):
            hasher.update(block)
    return "sha256:" + hasher.hexdigest()


def unpack(archive_path: Path, destination: Path) -> None:
    """Unpack into ``destination`` (created, must not exist), refusing unsafe members."""
    destination.mkdir(mode=0o755)
    try:
        with tarfile.open(archive_path, mode="r:gz") as archive:
            archive.extractall(destination, filter="data")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise ArchiveError(f"{archive_path}: cannot unpack the release: {error}") from None
    os.chmod(destination, 0o755)
