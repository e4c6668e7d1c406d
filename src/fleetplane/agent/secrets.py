"""Secrets delivered to workloads as files, one directory per workload.

``<data-dir>/secrets/<workload>/<secret>/<key>``: directories 0700, files
0600, each file written atomically. A replica finds its directory in
``FLEETPLANE_SECRETS_DIR``. Files rather than environment variables: an
environment is inherited by every child process, shown by ``ps e`` and
``/proc/PID/environ`` and easily logged; a file is read when needed and
can be replaced while the replica runs.

Values travel only from the control plane (mTLS, only Secrets the site's
desired state names) into these files. They are never logged, and never
put into the agent's SQLite state: the files are what lets workloads
restart with their secrets during a partition, so they stay on disk.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx

from fleetplane.agent.files import write_atomically
from fleetplane.agent.sync import V1
from fleetplane.errors import FleetplaneError


class SecretUnavailable(FleetplaneError):
    """The control plane did not hand out a secret; the message never holds a value."""

    reason = "SecretUnavailable"


class SecretFiles:
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)

    def directory(self, workload: str) -> Path:
        return self.root / workload

    def present(self, workload: str, names: list[str]) -> bool:
        return all((self.directory(workload) / name).is_dir() for name in names)

    async def fetch(self, client: httpx.AsyncClient, server: str, name: str) -> dict[str, str]:
        answer = await client.get(f"{server}{V1}/secrets/{name}")
        if answer.status_code != 200:
            raise SecretUnavailable(
                f"secret {name}: the control plane answered {answer.status_code}: "
                f"{_message(answer)}"
            )
        data = answer.json().get("spec", {}).get("data") or {}
        return {str(key): str(value) for key, value in data.items()}

    def write(self, workload: str, secrets: dict[str, dict[str, str]]) -> None:
        """Make the workload's directory hold exactly ``secrets`` (name → key → value)."""
        base = self._private_dir(self.directory(workload))
        for name, data in secrets.items():
            folder = self._private_dir(base / name)
            for key, value in data.items():
                write_atomically(folder / key, value.encode("utf-8"), mode=0o600)
            for stale in folder.iterdir():
                if stale.name not in data and not stale.name.startswith("."):
                    stale.unlink(missing_ok=True)
        for stale in base.iterdir():
            if stale.name not in secrets:
                shutil.rmtree(stale, ignore_errors=True)

    def keep_only(self, workloads: set[str]) -> None:
        """Delete the directories of workloads no longer desired here."""
        for folder in self.root.iterdir():
            if folder.name not in workloads:
                shutil.rmtree(folder, ignore_errors=True)

    @staticmethod
    def _private_dir(path: Path) -> Path:
        path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)
        return path


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", ""))
    except ValueError:
        return response.reason_phrase
