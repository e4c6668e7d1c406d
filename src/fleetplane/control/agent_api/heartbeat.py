"""Agents' status writes (heartbeats), batched: concurrent writes share one commit.

Thousands of agents writing every few seconds would otherwise cost one
fsync-bound transaction each. Writes queue up; one worker takes everything
queued (up to ``max_batch``) and commits it in one transaction, so the
commit rate stays bounded while each writer still gets its own answer.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from fleetplane import __version__
from fleetplane.control.agent_api.identity import identity_of
from fleetplane.control.api.auth import require
from fleetplane.control.api.resources import read_json
from fleetplane.control.api.status import ApiError
from fleetplane.control.controllers.transactions import StatusChange, write_statuses
from fleetplane.control.plane import ControlPlane
from fleetplane.control.store.errors import NotFound
from fleetplane.model.infrastructure import SiteStatus
from fleetplane.security.rbac import Verb

router = APIRouter(prefix="/apis/fleetplane/v1", tags=["agent status"])


class HeartbeatBatcher:
    def __init__(self, plane: ControlPlane, max_batch: int = 500) -> None:
        self.plane = plane
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[str, StatusChange, asyncio.Future[Any]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self.commits = 0

    async def write(self, site: str, change: StatusChange) -> Any:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.create_task(self._run(), name="heartbeat-batcher")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._queue.put((site, change, future))
        return await future

    async def _run(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while len(batch) < self.max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            changes = [("Site", site, change) for site, change, _ in batch]
            try:
                results: list[Any] = await asyncio.to_thread(
                    write_statuses, self.plane.store, changes
                )
            except Exception as error:
                results = [error] * len(batch)
            self.commits += 1
            for (_, _, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)


def check_agent_version(reported: object) -> None:
    """Agents of this minor version or one behind are served; older ones must upgrade."""
    if reported is None:
        return
    server = _major_minor(__version__)
    agent = _major_minor(str(reported))
    if agent is None or server is None:
        raise ApiError(422, f"status.agentVersion {reported!r} is no MAJOR.MINOR[.PATCH] version")
    if agent[0] != server[0] or agent[1] < server[1] - 1:
        raise ApiError(
            426,
            f"agent version {reported} is too old for control plane {__version__}: agents "
            f"{server[0]}.{max(server[1] - 1, 0)} or newer are served; upgrade the agent",
            reason="UpgradeRequired",
        )


def _major_minor(text: str) -> tuple[int, int] | None:
    parts = text.lstrip("v").split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return None


@router.put("/sites/{site}/status", summary="The agent writes its own site's status")
async def write_status(request: Request, site: str) -> JSONResponse:
    identity = identity_of(request.scope)
    if identity is None:
        raise ApiError(401, "an agent certificate is required")
    await require(request, identity.principal(), Verb.UPDATE, "Site", name=site,
                  subresource="status")
    body = await read_json(request)
    status = body.get("status") if isinstance(body, dict) else None
    if not isinstance(status, dict):
        raise ApiError(422, "the body must be {\"status\": {...}} (a Site status)")
    check_agent_version(status.get("agentVersion"))
    try:
        SiteStatus.model_validate(status)
    except ValueError as error:
        raise ApiError(422, f"status: {error}") from None
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")

    def change(current: dict[str, Any] | None) -> dict[str, Any]:
        previous = (current or {}).get("reachability")
        # An agent speaking again makes its site Reachable; Lost stays (people undo that).
        reachability = "Lost" if previous == "Lost" else "Reachable"
        return {**status, "heartbeat": now, "reachability": reachability}

    batcher: HeartbeatBatcher = request.app.state.heartbeats
    try:
        stored = await batcher.write(site, change)
    except NotFound:
        raise ApiError(404, f"site {site!r} not found") from None
    return JSONResponse(
        {"site": site, "resourceVersion": str(stored.resource_version), "heartbeat": now}
    )
