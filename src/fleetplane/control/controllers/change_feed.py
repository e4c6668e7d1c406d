"""Wake-ups for a controller when resources of some kinds change (heartbeats ignored)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fleetplane.control.plane import ControlPlane
from fleetplane.control.store.artifacts import ARTIFACT_EVENT_KIND
from fleetplane.control.store.errors import Expired


class ChangeFeed:
    """Reads the store's event log from where it last looked, for the given kinds.

    A Site event counts only when its spec, labels or reachability changed:
    agents write their status every few seconds, and that is no reason to plan.
    An Artifact event (a new name+version) counts only when a Workload names
    it. The kinds that counted since the last :meth:`take_changes` tell the
    controller what kind of pass it needs.
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
        # Workload → the (name, version) of the artifact it names.
        self._wanted: dict[str, tuple[str, str]] = {}
        self._changed: set[str] = set()

    async def start(self) -> None:
        self._seen = await asyncio.to_thread(self.plane.store.current_version)
        await asyncio.to_thread(self._relist)

    def _relist(self) -> None:
        resources, _ = self.plane.store.list_resources("Site")
        self._sites = {r.name: _site_key(r.to_document()) for r in resources}
        if ARTIFACT_EVENT_KIND in self.kinds:
            workloads, _ = self.plane.store.list_resources("Workload")
            self._wanted = {
                w.name: key for w in workloads if (key := _artifact_key(w.spec)) is not None
            }

    def take_changes(self) -> set[str]:
        """The kinds with relevant changes since the last call (and forget them)."""
        changed, self._changed = self._changed, set()
        return changed

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
                # Other kinds are filtered in the query: a fan-out's thousands of
                # SiteDesiredState events are never decoded here.
                batch = self.plane.store.events_since(
                    self._seen, kinds=self.kinds, limit=self.batch_size
                )
            except Expired:
                self._seen = self.plane.store.current_version()
                self._relist()
                self._changed.update(self.kinds)
                return True
            for event in batch.events:
                if event.kind in self.kinds and self._matters(
                    event.type, event.kind, event.name, event.object
                ):
                    self._changed.add(event.kind)
                    relevant = True
            self._seen = max(self._seen, batch.through)
            if len(batch.events) < self.batch_size:
                return relevant

    def _matters(self, type_: str, kind: str, name: str, document: dict[str, Any]) -> bool:
        if kind == "Workload":
            wanted = _artifact_key(document.get("spec")) if type_ != "DELETED" else None
            if wanted is None:
                self._wanted.pop(name, None)
            else:
                self._wanted[name] = wanted
            return True
        if kind == ARTIFACT_EVENT_KIND:
            pushed = _artifact_key({"artifact": document.get("spec")})
            return pushed in self._wanted.values()
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


def _artifact_key(spec: Any) -> tuple[str, str] | None:
    """(name, version) of the ``artifact`` a Workload spec names, if any."""
    artifact = spec.get("artifact") if isinstance(spec, dict) else None
    if not isinstance(artifact, dict):
        return None
    name, version = artifact.get("name"), artifact.get("version")
    return (str(name), str(version)) if name is not None and version is not None else None
