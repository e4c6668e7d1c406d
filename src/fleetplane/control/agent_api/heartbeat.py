"""Agents' status writes (heartbeats), batched: concurrent writes share one commit.

Thousands of agents writing every few seconds would otherwise cost one
fsync-bound transaction each. Writes queue up; one worker takes everything
queued (up to ``max_batch``) and commits it in one transaction, so the
commit rate stays bounded while each writer still gets its own answer.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from fleetplane import __version__
from fleetplane.control.agent_api.identity import identity_of
from fleetplane.control.api.auth import limit, require
from fleetplane.control.api.resources import read_json
from fleetplane.control.api.status import ApiError
from fleetplane.control.controllers.transactions import StatusChange, write_statuses
from fleetplane.control.plane import ControlPlane
from fleetplane.control.store.errors import NotFound
from fleetplane.control.store.heartbeats import touch_statuses
from fleetplane.control.store.records import StoredResource
from fleetplane.model.infrastructure import SiteStatus
from fleetplane.security.rbac import Verb

router = APIRouter(prefix="/apis/fleetplane/v1", tags=["agent status"])


# Sites whose last written status the batcher remembers (one per agent; bounded all the same).
REMEMBERED_SITES = 20_000


class HeartbeatBatcher:
    """Status writes queued and committed together; heartbeat-only writes touch the row.

    The batcher remembers each site's status as it last wrote it (and its
    resource version). When an agent's new status differs from that only in
    the heartbeat, the write is a *touch* (:func:`touch_statuses`): the status
    written in place if the site is still at that version, with no new
    resource version and no event, so readers of the change log (controllers,
    watches, other replicas) are not woken for it. Anything else — a first
    write, a changed status, a site someone else wrote since (the
    reachability controller marking it Unreachable, an operator, an apply,
    another replica) — is an ordinary status write (:func:`write_statuses`).
    """

    def __init__(self, plane: ControlPlane, max_batch: int = 500) -> None:
        self.plane = plane
        self.max_batch = max_batch
        self._queue: asyncio.Queue[tuple[str, StatusChange, asyncio.Future[Any]]] | None = None
        self._task: asyncio.Task[None] | None = None
        # Only the worker thread of the one running batch reads or writes this.
        self._written: dict[str, StoredResource] = {}
        self.commits = 0
        self.touches = 0

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
            changes = [(site, change) for site, change, _ in batch]
            try:
                results: list[Any] = await asyncio.to_thread(self._write, changes)
            except Exception as error:
                self._written.clear()
                results = [error] * len(batch)
            self.commits += 1
            for (_, _, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)

    def _write(self, batch: list[tuple[str, StatusChange]]) -> list[StoredResource | Exception]:
        """Touches first, then ordinary writes (the rest and touches that found the site moved)."""
        results: list[StoredResource | Exception | None] = [None] * len(batch)
        times = Counter(site for site, _ in batch)
        touches: list[tuple[int, StoredResource, dict[str, Any]]] = []
        ordinary: list[int] = []
        for index, (site, change) in enumerate(batch):
            known = self._written.get(site)
            # A site twice in one batch: write_statuses applies the changes in turn.
            new = _heartbeat_only(known, change) if known is not None and times[site] == 1 else None
            if known is not None and new is not None:
                touches.append((index, known, new))
            else:
                ordinary.append(index)
        if touches:
            written, now = touch_statuses(
                self.plane.store,
                [("Site", known.name, known.resource_version, new) for _, known, new in touches],
            )
            for (index, known, new), done in zip(touches, written, strict=True):
                if done:
                    results[index] = self._written[known.name] = replace(
                        known, status=new, updated_at=now
                    )
                    self.touches += 1
                else:
                    ordinary.append(index)
            ordinary.sort()
        if ordinary:
            stored = write_statuses(
                self.plane.store, [("Site", batch[i][0], batch[i][1]) for i in ordinary]
            )
            if len(self._written) >= REMEMBERED_SITES:
                self._written.clear()
            for index, result in zip(ordinary, stored, strict=True):
                results[index] = result
                site = batch[index][0]
                if isinstance(result, StoredResource):
                    self._written[site] = result
                else:
                    self._written.pop(site, None)
        return [r if r is not None else RuntimeError("status write lost") for r in results]


def _heartbeat_only(known: StoredResource, change: StatusChange) -> dict[str, Any] | None:
    """The new status if it differs from ``known``'s only in the heartbeat, else None."""
    if known.status is None:
        return None
    try:
        new = change(known.status)
    except Exception:
        return None  # the ordinary write reports it
    if new is None or _without_heartbeat(new) != _without_heartbeat(known.status):
        return None
    return new


def _without_heartbeat(status: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in status.items() if key != "heartbeat"}


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


def heartbeat_now() -> str:
    """The heartbeat time stamped on a status write: UTC, ISO 8601 with Z."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def status_change(status: dict[str, Any], now: str) -> StatusChange:
    """The stored status after the agent's write of ``status`` at ``now``."""

    def change(current: dict[str, Any] | None) -> dict[str, Any]:
        previous = (current or {}).get("reachability")
        # An agent speaking again makes its site Reachable; Lost stays (people undo that).
        reachability = "Lost" if previous == "Lost" else "Reachable"
        return {**status, "heartbeat": now, "reachability": reachability}

    return change


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
    limit(request, identity.principal())
    body = await read_json(request)
    status = body.get("status") if isinstance(body, dict) else None
    if not isinstance(status, dict):
        raise ApiError(422, "the body must be {\"status\": {...}} (a Site status)")
    check_agent_version(status.get("agentVersion"))
    try:
        SiteStatus.model_validate(status)
    except ValueError as error:
        raise ApiError(422, f"status: {error}") from None
    now = heartbeat_now()
    batcher: HeartbeatBatcher = request.app.state.heartbeats
    try:
        stored = await batcher.write(site, status_change(status, now))
    except NotFound:
        raise ApiError(404, f"site {site!r} not found") from None
    return JSONResponse(
        {"site": site, "resourceVersion": str(stored.resource_version), "heartbeat": now}
    )
