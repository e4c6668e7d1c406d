"""The agent's release cache: download by digest, verify, unpack, rename into place.

Layout under ``<data-dir>/artifacts``::

    releases/<hex>/   one unpacked release per sha256 digest (read by the replicas)
    staging/          downloads and unpacks in progress (emptied at start)
    history.json      per workload, the releases it ran, newest first

A release directory exists only once its archive's sha256 matched the
digest the desired state names and it unpacked completely: the download
goes to ``staging``, is hashed as it arrives, unpacked next to it, and
renamed into ``releases`` in one step. A mismatch deletes everything it
wrote. Each workload keeps its current and its previous release (an
instant way back); older ones are deleted. Installed releases need no
server, so workloads restart from them during partitions.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import shutil
from pathlib import Path

import httpx

from fleetplane.agent.files import write_atomically
from fleetplane.artifacts.archive import ArchiveError, unpack
from fleetplane.errors import FleetplaneError
from fleetplane.model.desired_state import ArtifactRef

log = logging.getLogger("fleetplane.agent")

ARTIFACT_PATH = "/agent/v1/artifacts"
# Releases kept per workload: the one it runs and the one before.
KEEP_PER_WORKLOAD = 2


class ArtifactError(FleetplaneError):
    """A release could not be installed; ``reason`` is the short form status reports."""

    reason = "ArtifactUnavailable"


class VerificationFailed(ArtifactError):
    reason = "ArtifactVerificationFailed"


class ArtifactCache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.releases = root / "releases"
        self.staging = root / "staging"
        self._history_file = root / "history.json"
        self._locks: dict[str, asyncio.Lock] = {}
        self.releases.mkdir(parents=True, exist_ok=True)
        # Whatever a crash left half-done is garbage: nothing in staging is ever used.
        shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True, exist_ok=True)
        self.history: dict[str, list[str]] = self._load_history()

    def path(self, digest: str) -> Path:
        return self.releases / digest.removeprefix("sha256:")

    def installed(self, digest: str) -> Path | None:
        found = self.path(digest)
        return found if found.is_dir() else None

    async def install(self, client: httpx.AsyncClient, server: str, ref: ArtifactRef) -> Path:
        """Download, verify and unpack ``ref`` unless it is installed; its release directory."""
        lock = self._locks.setdefault(ref.digest, asyncio.Lock())
        async with lock:
            found = self.installed(ref.digest)
            if found is not None:
                return found
            token = secrets.token_hex(4)
            archive = self.staging / f"{ref.digest.removeprefix('sha256:')}-{token}.tar.gz"
            unpacked = archive.with_suffix("").with_suffix(".d")
            try:
                await self._download(client, server, ref, archive)
                await asyncio.to_thread(unpack, archive, unpacked)
                os.rename(unpacked, self.path(ref.digest))
            except ArchiveError as error:
                raise ArtifactError(f"artifact {ref.name} ({ref.digest}): {error}") from None
            finally:
                archive.unlink(missing_ok=True)
                shutil.rmtree(unpacked, ignore_errors=True)
            log.info("installed artifact %s (%s)", ref.name, ref.digest)
            return self.path(ref.digest)

    async def _download(self, client: httpx.AsyncClient, server: str, ref: ArtifactRef,
                        archive: Path) -> None:
        hasher = hashlib.sha256()
        received = 0
        url = f"{server}{ARTIFACT_PATH}/{ref.digest}"
        descriptor = os.open(archive, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            async with client.stream("GET", url, timeout=httpx.Timeout(10.0, read=60.0)
                                     ) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise ArtifactError(
                        f"artifact {ref.name} ({ref.digest}): the control plane answered "
                        f"{response.status_code}: {_message(response)}"
                    )
                async for block in response.aiter_bytes():
                    received += len(block)
                    if ref.size and received > ref.size:
                        raise VerificationFailed(
                            f"artifact {ref.name} ({ref.digest}): the download is larger than "
                            f"the {ref.size} bytes the desired state names; not installed"
                        )
                    hasher.update(block)
                    handle.write(block)
        actual = "sha256:" + hasher.hexdigest()
        if actual != ref.digest:
            raise VerificationFailed(
                f"artifact {ref.name}: the downloaded bytes hash to {actual}, not {ref.digest} "
                "as the desired state names; not installed (the blob on the server is corrupt "
                "or was tampered with: push the release again)"
            )

    # --- what to keep ----------------------------------------------------------------

    def record_use(self, workload: str, digest: str) -> None:
        """``workload`` now runs ``digest``; the release it ran before becomes its previous."""
        runs = self.history.get(workload, [])
        if runs[:1] == [digest]:
            return
        self.history[workload] = [digest, *(d for d in runs if d != digest)][:KEEP_PER_WORKLOAD]
        self._save_history()

    def collect(self, desired: set[str], workloads: set[str]) -> list[str]:
        """Delete releases neither ``desired`` nor current/previous of a desired workload."""
        gone = set(self.history) - workloads
        for name in gone:
            del self.history[name]
        if gone:
            self._save_history()
        keep = {d.removeprefix("sha256:") for d in desired}
        keep |= {d.removeprefix("sha256:") for runs in self.history.values() for d in runs}
        removed = []
        for release in self.releases.iterdir():
            if release.name not in keep:
                shutil.rmtree(release, ignore_errors=True)
                removed.append(release.name)
        if removed:
            log.info("removed %d old release(s) from the cache", len(removed))
        return removed

    def _load_history(self) -> dict[str, list[str]]:
        try:
            loaded = json.loads(self._history_file.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): [str(d) for d in v] for k, v in loaded.items()} if isinstance(
            loaded, dict) else {}

    def _save_history(self) -> None:
        write_atomically(self._history_file, json.dumps(self.history, sort_keys=True).encode(),
                         mode=0o600)


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", response.text))
    except ValueError:
        return response.text
