"""Crash-safe writes into the agent's data directory."""

from __future__ import annotations

import os
from pathlib import Path


def write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Write to a sibling temporary file created with ``mode``, fsync, then rename over ``path``.

    The file never exists with looser permissions, and a crash leaves either
    the old or the new content, never a mix (the key and certificate share
    one file for that reason).
    """
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(descriptor, mode)
        os.write(descriptor, data)
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(temporary, path)
