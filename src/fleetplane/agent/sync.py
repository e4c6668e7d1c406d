"""Follow the site's SiteDesiredState from the last applied revision, in order.

The watch asks for ``?watch=true&sinceRevision=N`` with N the revision in
the local state, so after a partition the revisions the agent missed arrive
first, oldest first. When the server no longer keeps revision N+1 (410), the
agent takes the latest document instead. A revision at or below the applied
one is ignored: applying is idempotent by revision.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx

from fleetplane.agent.state import LocalState
from fleetplane.model.desired_state import SiteDesiredState

log = logging.getLogger("fleetplane.agent")

V1 = "/apis/fleetplane/v1"
# The server writes a BOOKMARK line every 15 s on an idle watch: two missed ones mean the
# link is gone, so a silent partition is noticed (and /healthz says so) within ~35 s.
WATCH_READ_TIMEOUT = 35.0
# httpx's own timeouts cover each phase of a request but not a connection that
# httpcore leaves locked after a request was cancelled while it was being set up
# (seen with 2,000 agents: catch-up requests waited forever on it). A catch-up
# that takes longer than this is abandoned; the agent then drops its client.
CATCH_UP_DEADLINE = 60.0


class SyncError(Exception):
    """The server answered something the agent cannot use; the watch is retried."""


class StuckRequest(SyncError):
    """A request outlived every timeout it had; the client that made it is suspect."""


class DesiredStateSync:
    def __init__(self, site: str, state: LocalState,
                 on_applied: Callable[[SiteDesiredState], None]) -> None:
        self.site = site
        self.state = state
        self.on_applied = on_applied
        self.catch_up_deadline = CATCH_UP_DEADLINE
        self.applied: SiteDesiredState | None = None
        self.applied_history: list[int] = []
        stored = state.applied()
        if stored is not None:
            self.applied = SiteDesiredState.model_validate(stored[1])

    @property
    def revision(self) -> int:
        return self.applied.spec.revision if self.applied is not None else 0

    def apply(self, document: dict[str, Any], notify: bool = True) -> bool:
        """Persist and hand over one revision; False when it is not newer than the applied one.

        ``notify=False`` records the revision without waking the runtime: a backlog is
        applied in order and the runtime is woken once, for the newest.
        """
        desired = SiteDesiredState.model_validate(document)
        if desired.spec.site != self.site:
            raise SyncError(f"the server sent site {desired.spec.site!r}'s desired state")
        if desired.spec.revision <= self.revision:
            return False
        self.state.save_applied(document)
        self.applied = desired
        self.applied_history.append(desired.spec.revision)
        log.info("applied revision %d of site %s", desired.spec.revision, self.site)
        if notify:
            self.on_applied(desired)
        return True

    async def catch_up(self, client: httpx.AsyncClient, base: str) -> None:
        """Every revision missed since the applied one, fetched in one answer.

        Each is stored and recorded in order, then the runtime is woken once: on the
        watch they arrived one line at a time, and a reconcile pass between two lines
        started replicas of a revision that was already superseded.
        """
        answer = await client.get(f"{base}{V1}/sitedesiredstates/{self.site}",
                                  params={"sinceRevision": str(self.revision)})
        if answer.status_code == 410:
            log.warning("the revisions after %d are no longer kept by the server; "
                        "taking the latest", self.revision)
            await self.catch_up_latest(client, base)
            return
        if answer.status_code != 200:
            raise SyncError(f"GET revisions since {self.revision} answered "
                            f"{answer.status_code}: {answer.text}")
        backlog = [document for document in answer.json()["items"]
                   if self.apply(document, notify=False)]
        if backlog and self.applied is not None:
            self.on_applied(self.applied)

    async def catch_up_latest(self, client: httpx.AsyncClient, base: str) -> None:
        answer = await client.get(f"{base}{V1}/sitedesiredstates/{self.site}")
        if answer.status_code == 404:
            return
        if answer.status_code != 200:
            raise SyncError(f"GET desired state answered {answer.status_code}: {answer.text}")
        self.apply(answer.json())

    async def watch(self, client: httpx.AsyncClient, base: str,
                    on_line: Callable[[], None]) -> None:
        """One watch connection; returns when the server ends it, raises on transport errors."""
        catching_up = (self.catch_up_latest(client, base) if self.applied is None
                       else self.catch_up(client, base))
        try:
            await asyncio.wait_for(catching_up, self.catch_up_deadline)
        except TimeoutError as error:
            raise StuckRequest(
                f"catching up from revision {self.revision} took over "
                f"{self.catch_up_deadline:g} s; abandoned"
            ) from error
        url = f"{base}{V1}/sitedesiredstates/{self.site}"
        params = {"watch": "true", "sinceRevision": str(self.revision)}
        async with client.stream("GET", url, params=params,
                                 timeout=httpx.Timeout(10.0, read=WATCH_READ_TIMEOUT)) as response:
            if response.status_code == 410:
                log.warning("the revisions after %d are no longer kept by the server; "
                            "taking the latest", self.revision)
                await response.aread()
                await self.catch_up_latest(client, base)
                return
            if response.status_code != 200:
                await response.aread()
                raise SyncError(f"watch answered {response.status_code}: {response.text}")
            # Connected once the watch is open, not at its first line (up to 15 s later).
            on_line()
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                on_line()
                event = json.loads(line)
                if event["type"] == "REVISION":
                    self.apply(event["object"])
                elif event["type"] == "ERROR":
                    if event["object"].get("code") == 410:
                        log.warning("the revisions after %d are no longer kept by the server "
                                    "(%s); taking the latest", self.revision,
                                    event["object"].get("message"))
                        await self.catch_up_latest(client, base)
                        return
                    raise SyncError(f"watch error: {event['object']}")
