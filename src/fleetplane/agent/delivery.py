"""Between the desired state and the runtime: a workload starts only with its release and secrets.

:meth:`WorkloadDelivery.prepare` is called every reconcile tick. For each
desired workload it checks that every artifact is installed (verified) and
every referenced secret is on disk; such a workload is handed to the
runtime with ``FLEETPLANE_ARTIFACT_DIR`` (its first artifact's release,
also the replicas' working directory) and ``FLEETPLANE_SECRETS_DIR`` added
to its environment. Otherwise a background task fetches what is missing
and the runtime gets the workload as it was last handed over — the old
release keeps serving while the new one downloads, or fails to verify — or
not at all when it never ran here. Failures are retried with back-off and
shown in the site status with their reason.

The last handed form of each workload is kept in ``artifacts/delivered.json``
so that an agent restarted during a partition keeps running what it ran.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from fleetplane.agent.artifacts import ArtifactCache, ArtifactError
from fleetplane.agent.files import write_atomically
from fleetplane.agent.secrets import SecretFiles, SecretUnavailable
from fleetplane.model.desired_state import DesiredWorkload, SiteDesiredStateSpec
from fleetplane.model.infrastructure import WorkloadState

log = logging.getLogger("fleetplane.agent")

RETRY_BASE = 5.0
RETRY_CAP = 300.0
SECRET_REFRESH = 60.0


@dataclass
class Trouble:
    reason: str
    message: str
    failures: int = 0
    retry_at: float = 0.0


class WorkloadDelivery:
    def __init__(self, data_dir: Path, server: str, wake: Callable[[], None]) -> None:
        self.server = server.rstrip("/")
        self.cache = ArtifactCache(data_dir / "artifacts")
        self.secrets = SecretFiles(data_dir / "secrets")
        self.wake = wake
        self.troubles: dict[str, Trouble] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._refreshed: dict[str, float] = {}
        self._delivered_file = data_dir / "artifacts" / "delivered.json"
        self.delivered: dict[str, DesiredWorkload] = self._load_delivered()

    def prepare(self, desired: SiteDesiredStateSpec, client: httpx.AsyncClient | None
                ) -> SiteDesiredStateSpec:
        """What the runtime may run now; starts fetching what is missing."""
        handed: list[DesiredWorkload] = []
        for item in desired.workloads:
            if self._ready(item):
                ready = self._with_delivery(item)
                self.troubles.pop(item.workload, None)
                for ref in item.artifacts:
                    self.cache.record_use(item.workload, ref.digest)
                self._remember(ready)
                self._refresh_secrets(item, client)
                handed.append(ready)
                continue
            self._fetch(item, client)
            previous = self.delivered.get(item.workload)
            if previous is not None:
                handed.append(previous)
        names = {item.workload for item in desired.workloads}
        self.cache.collect({r.digest for item in desired.workloads for r in item.artifacts},
                           names)
        self.secrets.keep_only(names)
        self._forget_except(names)
        return desired.model_copy(update={"workloads": handed})

    def annotate(self, states: list[WorkloadState]) -> list[WorkloadState]:
        """Status with the reason a workload is held back (or runs its previous release)."""
        annotated = []
        for state in states:
            trouble = self.troubles.get(state.workload)
            if trouble is None:
                annotated.append(state)
                continue
            if state.workload in self.delivered:
                annotated.append(state.model_copy(update={
                    "message": f"{trouble.reason}: {trouble.message}; still running the "
                               "previous release"}))
            else:
                annotated.append(state.model_copy(update={
                    "state": "Failed" if trouble.failures else "Pending",
                    "message": f"{trouble.reason}: {trouble.message}"}))
        return annotated

    async def close(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    # --- readiness -------------------------------------------------------------------

    def _ready(self, item: DesiredWorkload) -> bool:
        return all(self.cache.installed(r.digest) for r in item.artifacts) and (
            self.secrets.present(item.workload, item.secrets))

    def _with_delivery(self, item: DesiredWorkload) -> DesiredWorkload:
        env = dict(item.env)
        if item.artifacts:
            env["FLEETPLANE_ARTIFACT_DIR"] = str(self.cache.path(item.artifacts[0].digest))
        if item.secrets:
            env["FLEETPLANE_SECRETS_DIR"] = str(self.secrets.directory(item.workload))
        return item.model_copy(update={"env": env})

    # --- fetching ----------------------------------------------------------------------

    def _fetch(self, item: DesiredWorkload, client: httpx.AsyncClient | None) -> None:
        running = self._tasks.get(item.workload)
        if running is not None and not running.done():
            return
        trouble = self.troubles.get(item.workload)
        if client is None:
            if trouble is None:
                self.troubles[item.workload] = Trouble(
                    "ArtifactUnavailable", "waiting for the control plane to fetch the release "
                    "and secrets (none cached here yet)")
            return
        if trouble is not None and time.monotonic() < trouble.retry_at:
            return
        self._tasks[item.workload] = asyncio.create_task(self._deliver(item, client))

    async def _deliver(self, item: DesiredWorkload, client: httpx.AsyncClient) -> None:
        try:
            for ref in item.artifacts:
                await self.cache.install(client, self.server, ref)
            await self._write_secrets(item, client)
        except (ArtifactError, SecretUnavailable) as error:
            self._failed(item.workload, error.reason, str(error))
        except (httpx.HTTPError, OSError) as error:
            self._failed(item.workload, "ArtifactUnavailable",
                         f"cannot reach the control plane: {error}")
        else:
            self.troubles.pop(item.workload, None)
        self.wake()

    async def _write_secrets(self, item: DesiredWorkload, client: httpx.AsyncClient) -> None:
        values = {name: await self.secrets.fetch(client, self.server, name)
                  for name in item.secrets}
        await asyncio.to_thread(self.secrets.write, item.workload, values)
        self._refreshed[item.workload] = time.monotonic()

    def _refresh_secrets(self, item: DesiredWorkload, client: httpx.AsyncClient | None) -> None:
        """Re-read a running workload's secrets now and then (a changed value reaches its files)."""
        if not item.secrets or client is None:
            return
        last = self._refreshed.get(item.workload)
        running = self._tasks.get(item.workload)
        if (last is not None and time.monotonic() - last < SECRET_REFRESH) or (
                running is not None and not running.done()):
            return
        self._refreshed[item.workload] = time.monotonic()
        self._tasks[item.workload] = asyncio.create_task(self._refresh(item, client))

    async def _refresh(self, item: DesiredWorkload, client: httpx.AsyncClient) -> None:
        try:
            await self._write_secrets(item, client)
        except (SecretUnavailable, httpx.HTTPError, OSError) as error:
            # The files on disk stay: a partition must not take a workload's secrets away.
            log.info("secrets of %s not refreshed (%s)", item.workload, error)

    def _failed(self, workload: str, reason: str, message: str) -> None:
        trouble = self.troubles.get(workload) or Trouble(reason, message)
        trouble.reason, trouble.message = reason, message
        delay = min(RETRY_CAP, RETRY_BASE * 2 ** trouble.failures)
        trouble.failures += 1
        trouble.retry_at = time.monotonic() + delay
        self.troubles[workload] = trouble
        log.warning("workload %s not started: %s (retrying in %.0f s)", workload, message, delay)

    # --- what was handed over ----------------------------------------------------------

    def _remember(self, item: DesiredWorkload) -> None:
        if self.delivered.get(item.workload) == item:
            return
        self.delivered[item.workload] = item
        self._save_delivered()

    def _forget_except(self, names: set[str]) -> None:
        gone = set(self.delivered) - names
        for name in gone:
            del self.delivered[name]
        for name in set(self.troubles) - names:
            del self.troubles[name]
        if gone:
            self._save_delivered()

    def _load_delivered(self) -> dict[str, DesiredWorkload]:
        try:
            loaded = json.loads(self._delivered_file.read_text())
            return {name: DesiredWorkload.model_validate(item) for name, item in loaded.items()}
        except (OSError, ValueError):
            return {}

    def _save_delivered(self) -> None:
        document = {name: item.model_dump(mode="json", by_alias=True, exclude_none=True)
                    for name, item in sorted(self.delivered.items())}
        write_atomically(self._delivered_file, json.dumps(document).encode(), mode=0o600)
