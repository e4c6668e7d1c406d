"""Wake-ups for a controller when resources of some kinds change (heartbeats ignored)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fleetplane.control.plane import ControlPlane
from fleetplane.control.store.errors import Expired


class ChangeFeed:
    """Reads the store's event log from where it last looked, for the given kinds.

    A Site event counts only when its spec, labels or reachability changed:
    agents write their status every few seconds, and that is no reason to plan.
    """

    def __init__(
        self,
        plane: ControlPlane,
        kinds: Sequence[str],
        idle: float = 30.0,
        batch_size: int = 5_000,
    ) -> None:
        self.plane = plane
        self.batch_size = batch_size
        self.kinds = tuple(kinds)
        self.idle = idle
        self._seen = 0
        self._sites: dict[str, tuple[Any, ...]] = {}

    async def start(self) -> None:
        self._seen = await asyncio.to_thread(self.plane.store.current_version)
        resources, _ = await asyncio.to_thread(self.plane.store.list_resources, "Site")
        self._sites = {r.name: _site_key(r.to_document()) for r in resources}

    async def next_change(self) -> None:
        """Return once a relevant change committed after the last look."""
        while not await self.drain():
            await self.plane.notifier.wait_for(self._seen, self.idle)

    async def drain(self) -> bool:
        """Consume everything committed so far; True if any of it was relevant."""
        return await asyncio.to_thread(self._read)

    def _read(self) -> bool:
        # One read of the whole log per round, never one per kind: each read is
        # its own snapshot, so a commit landing between two per-kind reads would
        # move ``through`` past events of the kinds already read, and that
        # change would never be planned.
        relevant = False
        while True:
            try:
                batch = self.plane.store.events_since(self._seen, limit=self.batch_size)
            except Expired:
                self._seen = self.plane.store.current_version()
                resources, _ = self.plane.store.list_resources("Site")
                self._sites = {r.name: _site_key(r.to_document()) for r in resources}
                return True
            for event in batch.events:
                if event.kind in self.kinds:
                    relevant |= self._matters(event.type, event.kind, event.name, event.object)
            self._seen = max(self._seen, batch.through)
            if len(batch.events) < self.batch_size:
                return relevant

    def _matters(self, type_: str, kind: str, name: str, document: dict[str, Any]) -> bool:
        if kind != "Site":
            return True
        key = _site_key(document) if type_ != "DELETED" else None
        before = self._sites.get(name)
        if key is None:
            self._sites.pop(name, None)
        else:
            self._sites[name] = key
        return key != before


# Reachability states the planner treats differently (see planner.py); the rest
# (Unknown, Reachable) plan alike, so an agent's first heartbeat is no reason to plan.
_PLANNED_REACHABILITY = frozenset({"Unreachable", "Lost"})


def _site_key(document: dict[str, Any]) -> tuple[Any, ...]:
    status = document.get("status") or {}
    metadata = document.get("metadata") or {}
    reachability = status.get("reachability")
    planned = reachability if reachability in _PLANNED_REACHABILITY else None
    return (document.get("spec"), metadata.get("labels"), planned)
