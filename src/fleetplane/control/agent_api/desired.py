"""An agent's own desired state: revisions it missed (sinceRevision), or a watch of new ones."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from fleetplane.control.agent_api.identity import identity_of
from fleetplane.control.api.auth import plane_of, require
from fleetplane.control.api.status import ApiError
from fleetplane.control.controllers.transactions import (
    KeptRevisions,
    SiteRevision,
    revision_feed,
    revisions_after_version_in_hand,
    revisions_since,
)
from fleetplane.control.plane import ControlPlane
from fleetplane.control.store.errors import NotFound
from fleetplane.control.store.repository import Store
from fleetplane.security.rbac import Verb

router = APIRouter(prefix="/apis/fleetplane/v1", tags=["agent desired state"])

KEEPALIVE_SECONDS = 15.0


class RevisionHub:
    """One reader of new revisions for all watchers in this process; wakes the sites concerned.

    It also hands each woken watcher the revisions it read, so a change to
    every site costs one query here instead of one per watcher; a watcher
    uses them only when they continue exactly from the last revision it sent
    (else it asks the store, which also tells it when it fell behind).
    Revisions this process wrote come from its revision feed (only their
    keys are read from the store), and each revision's watch line is encoded
    once, here, for whichever watchers send it.
    """

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self._events: dict[str, asyncio.Event] = {}
        self._fresh: dict[str, list[SiteRevision]] = {}
        self._task: asyncio.Task[None] | None = None

    def continuing(self, site: str, sent: int) -> list[SiteRevision] | None:
        """The last revisions read for ``site`` after ``sent``, if they start at ``sent + 1``."""
        after = [r for r in self._fresh.get(site, ()) if r.revision > sent]
        return after if after and after[0].revision == sent + 1 else None

    def event(self, site: str) -> asyncio.Event:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="revision-hub")
        return self._events.setdefault(site, asyncio.Event())

    async def _run(self) -> None:
        # The agent port can take a watch before the human API's start-up has
        # bound the notifier (agents reconnect the moment a restarted server
        # listens); without this the hub died and no watch was woken again.
        self.plane.notifier.bind(asyncio.get_running_loop())
        revision_feed(self.plane.store).activate()
        seen = self.plane.notifier.version
        # A closed notifier returns at once without suspending: looping on would starve the
        # event loop and keep the server from ever shutting down.
        while not self.plane.notifier.closed:
            latest = await self.plane.notifier.wait_for(seen, KEEPALIVE_SECONDS)
            if latest <= seen:
                continue
            fresh = await asyncio.to_thread(_fresh_after, self.plane.store, seen)
            # Every revision up to the newest one read has committed (versions are
            # given in commit order), so none below it can turn up later.
            seen = max(latest, fresh[-1].resource_version if fresh else latest)
            revision_feed(self.plane.store).forget_through(seen)
            by_site: dict[str, list[SiteRevision]] = {}
            for revision in fresh:
                by_site.setdefault(revision.site, []).append(revision)
            for site, revisions in by_site.items():
                self._fresh[site] = revisions
                woken = self._events.pop(site, None)
                if woken is not None:
                    woken.set()


def _fresh_after(store: Store, version: int) -> list[SiteRevision]:
    """The revisions after ``version``, each with its watch line (encoded once, shared)."""
    return [
        replace(revision, line=_revision_line(revision))
        for revision in revisions_after_version_in_hand(store, version)
    ]


def _revision_line(revision: SiteRevision) -> bytes:
    """The watch's REVISION event for ``revision`` (its document's JSON reused when in hand)."""
    if revision.line is not None:
        return revision.line
    if revision.encoded is None:
        return _line({"type": "REVISION", "object": revision.document})
    return b'{"type":"REVISION","object":' + revision.encoded.encode() + b"}\n"


@router.get(
    "/sitedesiredstates/{site}",
    summary="The agent's desired state: latest, revisions since N, or a watch",
    response_model=None,
)
async def desired_state(
    request: Request,
    site: str,
    since_revision: Annotated[int | None, Query(alias="sinceRevision", ge=0)] = None,
    watch: bool = False,
) -> Response:
    plane = plane_of(request)
    identity = identity_of(request.scope)
    if identity is None:
        raise ApiError(401, "an agent certificate is required")
    await require(
        request, identity.principal(), Verb.WATCH if watch else Verb.GET, "SiteDesiredState",
        name=site,
    )
    if watch:
        hub: RevisionHub = request.app.state.revision_hub
        return StreamingResponse(
            _stream(plane, hub, site, since_revision or 0), media_type="application/x-ndjson"
        )
    if since_revision is None:
        try:
            current = await run_in_threadpool(plane.store.get, "SiteDesiredState", site)
        except NotFound:
            raise ApiError(404, f"no desired state for site {site!r} yet") from None
        return JSONResponse(current.to_document())
    revisions = await _missed(plane, site, since_revision)
    return JSONResponse({"site": site, "items": [r.document for r in revisions]})


async def _missed(plane: ControlPlane, site: str, since: int) -> list[SiteRevision]:
    kept = await run_in_threadpool(revisions_since, plane.store, site, since)
    problem = _gap(kept, site, since)
    if problem is not None:
        raise ApiError(410, f"{problem}; fetch the latest desired state and apply it",
                       reason="Expired")
    return kept.revisions


def _gap(kept: KeptRevisions, site: str, since: int) -> str | None:
    """Why the revisions after ``since`` cannot be served in order, or None when they can."""
    if since > kept.latest > 0:
        # The store was restored from a backup older than what the agent applied.
        return f"revision {since} of site {site!r} is newer than the latest ({kept.latest})"
    if since >= kept.latest:
        return None
    # Revision since+1 must still be kept, or the agent would skip some.
    if kept.oldest is None:
        # Rows missing altogether (e.g. a store restored without its history).
        return (f"site {site!r} is at revision {kept.latest} but no revision history is "
                f"kept, so those after {since} cannot be replayed")
    if since + 1 < kept.oldest:
        return (f"revision {since} of site {site!r} is older than the oldest kept "
                f"({kept.oldest})")
    return None


async def _stream(
    plane: ControlPlane, hub: RevisionHub, site: str, since: int
) -> AsyncIterator[bytes]:
    sent = since
    # The store is asked at the start and whenever the hub's wake-up does not
    # continue from ``sent``; a keep-alive timeout means nothing new for this
    # site (the hub would have woken us), so it costs no query: 2,000 idle
    # watches would otherwise query the store ~130 times a second.
    ask_store = True
    while True:
        woken = hub.event(site)
        revisions = hub.continuing(site, sent)
        if revisions is None and not ask_store:
            revisions = []
        elif revisions is None:
            try:
                revisions = await _missed(plane, site, sent)
            except ApiError as error:
                yield _line({"type": "ERROR", "object": {"code": error.code,
                                                          "message": error.message}})
                return
        for revision in revisions:
            yield _revision_line(revision)
            sent = revision.revision
        try:
            await asyncio.wait_for(woken.wait(), KEEPALIVE_SECONDS)
            ask_store = True
        except TimeoutError:
            ask_store = False
            yield _line({"type": "BOOKMARK", "object": {"revision": sent}})


def _line(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode() + b"\n"
