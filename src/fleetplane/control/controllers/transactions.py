"""Writes that must share one store transaction with rows of the controllers' own tables.

The store's public methods each run their own transaction; these use its
``run_write`` seam and the same per-row steps (``_insert``/``_update``/
``_update_status``) so the resource, its watch event, its audit entry and
our history row commit together or not at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, delete, func, insert, select

from fleetplane.control.controllers.tables import SiteRevisionRow
from fleetplane.control.store.errors import NotFound
from fleetplane.control.store.records import StoredResource
from fleetplane.control.store.repository import Desired, Store, load_many

SDS_KIND = "SiteDesiredState"
REVISIONS = cast(Table, SiteRevisionRow.__table__)
_DELETE_EXPIRED = delete(REVISIONS).where(
    REVISIONS.c.site == bindparam("site"), REVISIONS.c.revision <= bindparam("through")
)


@dataclass(frozen=True)
class SiteRevision:
    site: str
    revision: int
    resource_version: int
    document: dict[str, Any]


def load_resource(
    store: Store, connection: Connection, kind: str, name: str
) -> StoredResource | None:
    from fleetplane.control.store.repository import _load

    return _load(connection, kind, name)


# Sites per fan-out transaction: each site's revision is independent of the
# others', so thousands of sites are written a chunk at a time and agents'
# status writes (and applies) take the write lock between chunks instead of
# waiting for the whole fan-out.
FAN_OUT_CHUNK = 200


def write_site_states(
    store: Store,
    specs: dict[str, dict[str, Any]],
    *,
    actor: str,
    keep: int,
    chunk: int = FAN_OUT_CHUNK,
) -> list[SiteRevision]:
    """Write each site's new desired spec as its next revision, with history.

    ``specs`` maps site → spec without ``revision``; sites whose workloads did
    not change are skipped. Returns the revisions written. Sites are written
    in transactions of ``chunk`` sites (in name order), each a background
    write (see ``WriteGate``): one site's spec, revision row, event and audit
    entry always commit together, and a site's revisions stay in order.
    """
    names = sorted(specs)
    written: list[SiteRevision] = []
    for start in range(0, len(names), max(chunk, 1)):
        part = {name: specs[name] for name in names[start:start + max(chunk, 1)]}
        write = partial(_write_site_chunk, store, specs=part, actor=actor, keep=keep)
        written.extend(store.run_write(write, background=True))
    return written


def _write_site_chunk(
    store: Store,
    connection: Connection,
    *,
    specs: dict[str, dict[str, Any]],
    actor: str,
    keep: int,
) -> list[SiteRevision]:
    # One query per table for every site of the chunk, not one per site.
    names = sorted(specs)
    latest = _latest_revisions(connection, names)
    currents = load_many(connection, SDS_KIND, names)
    changes: list[tuple[StoredResource | None, Desired]] = []
    revisions: list[int] = []
    for site in names:
        spec = specs[site]
        current = currents.get(site)
        previous = int(current.spec.get("revision", 0)) if current is not None else 0
        if current is not None and _same_content(current.spec, spec):
            continue
        revision = max(previous, latest.get(site, 0)) + 1
        changes.append((current, Desired(SDS_KIND, site, {"fleetplane.io/site": site}, {},
                                         {**spec, "site": site, "revision": revision})))
        revisions.append(revision)
    stored = store.write_many(connection, changes, actor=actor, action="derive")
    written = [
        SiteRevision(item.name, revision, item.resource_version, item.to_document())
        for item, revision in zip(stored, revisions, strict=True)
    ]
    if not written:
        return written
    connection.execute(
        insert(REVISIONS),
        [
            {"site": w.site, "revision": w.revision,
             "resource_version": w.resource_version, "document": w.document}
            for w in written
        ],
    )
    expired = [{"site": w.site, "through": w.revision - keep} for w in written
               if w.revision > keep]
    if expired:
        connection.execute(_DELETE_EXPIRED, expired)
    return written


def _same_content(current: dict[str, Any], new: dict[str, Any]) -> bool:
    """Equal workloads: the placement generation alone changing is no new revision."""
    return bool(current.get("workloads", []) == new.get("workloads", []))


_LATEST_REVISIONS = (
    select(REVISIONS.c.site, func.max(REVISIONS.c.revision))
    .where(REVISIONS.c.site.in_(bindparam("names", expanding=True)))
    .group_by(REVISIONS.c.site)
)


def _latest_revisions(connection: Connection, names: Sequence[str]) -> dict[str, int]:
    """The highest revision row of each of ``names`` (the primary key's index, not a scan)."""
    if not names:
        return {}
    rows = connection.execute(_LATEST_REVISIONS, {"names": list(names)}).all()
    return {site: int(revision) for site, revision in rows}


StatusChange = Callable[[dict[str, Any] | None], dict[str, Any] | None]


def write_statuses(
    store: Store, changes: Sequence[tuple[str, str, StatusChange]]
) -> list[StoredResource | Exception]:
    """Apply several status changes in one transaction (heartbeats from many agents at once).

    Each change sees the latest status and returns the new one; a change that
    raises fails alone (its slot holds the exception), the others commit.
    """

    def write(connection: Connection) -> list[StoredResource | Exception]:
        results: list[StoredResource | Exception] = []
        currents: dict[str, dict[str, StoredResource]] = {}
        for kind in {kind for kind, _, _ in changes}:
            names = sorted({name for k, name, _ in changes if k == kind})
            currents[kind] = load_many(connection, kind, names)
        # Several changes of one resource in a batch apply in turn, each to the last:
        # a repeated resource first writes what is pending, then builds on it.
        last_written: dict[tuple[str, str], int] = {}
        pending: list[tuple[int, StoredResource, dict[str, Any] | None]] = []
        for kind, name, change in changes:
            current: StoredResource | Exception | None = currents[kind].get(name)
            if (kind, name) in last_written:
                _flush_statuses(store, connection, pending, results)
                current = results[last_written[(kind, name)]]
            if not isinstance(current, StoredResource):
                results.append(NotFound(kind, name))
                continue
            try:
                status = change(current.status)
            except Exception as error:
                results.append(error)
                continue
            last_written[(kind, name)] = len(results)
            pending.append((len(results), current, status))
            results.append(current)  # replaced once written
        _flush_statuses(store, connection, pending, results)
        return results

    return store.run_write(write)


def _flush_statuses(
    store: Store,
    connection: Connection,
    pending: list[tuple[int, StoredResource, dict[str, Any] | None]],
    results: list[StoredResource | Exception],
) -> None:
    changes = [(current, status) for _, current, status in pending]
    written = store.update_statuses(connection, changes)
    for (index, _, _), stored in zip(pending, written, strict=True):
        results[index] = stored
    pending.clear()


def write_placement(
    store: Store,
    spec: dict[str, Any],
    status: dict[str, Any],
    *,
    name: str,
    actor: str,
) -> StoredResource:
    """Create or replace the Placement and its status (the diff) in one audited transaction."""

    def write(connection: Connection) -> StoredResource:
        current = load_resource(store, connection, "Placement", name)
        desired = Desired("Placement", name, {}, {}, spec)
        if current is None:
            stored = store._insert(connection, desired, actor, "plan")
        else:
            stored = store._update(connection, current, desired, actor, "plan")
        return store._update_status(connection, stored, status)

    return store.run_write(write)


@dataclass(frozen=True)
class PlacementHead:
    """What the controller needs of the stored Placement after planning: not its spec."""

    name: str
    generation: int
    resource_version: int
    status: dict[str, Any] | None


def placement_head(store: Store, name: str) -> PlacementHead:
    """The Placement's generation, version and status (its spec, the whole plan, not decoded)."""
    from fleetplane.control.store.database import read_transaction
    from fleetplane.control.store.schema import RESOURCES

    with read_transaction(store.engine) as connection:
        row = connection.execute(
            select(RESOURCES.c.generation, RESOURCES.c.resource_version, RESOURCES.c.status)
            .where(RESOURCES.c.kind == "Placement", RESOURCES.c.name == name)
        ).first()
    if row is None:
        raise NotFound("Placement", name)
    return PlacementHead(name, int(row.generation), int(row.resource_version), row.status)


@dataclass(frozen=True)
class KeptRevisions:
    """What the store holds of one site's history, read in one snapshot."""

    # Revisions above the one asked for, oldest first.
    revisions: list[SiteRevision]
    # The oldest revision row still kept (None: no rows at all).
    oldest: int | None
    # The revision of the site's current SiteDesiredState (0: none yet).
    latest: int


def revisions_since(store: Store, site: str, after: int) -> KeptRevisions:
    """Revisions of ``site`` above ``after`` in order, the oldest one kept and the latest."""
    from fleetplane.control.store.database import read_transaction

    with read_transaction(store.engine, snapshot=True) as connection:
        current = load_resource(store, connection, SDS_KIND, site)
        oldest = connection.execute(
            select(SiteRevisionRow.revision)
            .where(SiteRevisionRow.site == site)
            .order_by(SiteRevisionRow.revision)
            .limit(1)
        ).scalar()
        rows = connection.execute(
            select(SiteRevisionRow)
            .where(SiteRevisionRow.site == site, SiteRevisionRow.revision > after)
            .order_by(SiteRevisionRow.revision)
        ).all()
    revisions = [SiteRevision(r.site, r.revision, r.resource_version, r.document) for r in rows]
    latest = int(current.spec.get("revision", 0)) if current is not None else 0
    return KeptRevisions(revisions, int(oldest) if oldest is not None else None, latest)


def revisions_after_version(store: Store, version: int) -> list[SiteRevision]:
    """Every revision written after global resource version ``version`` (for watchers)."""
    from fleetplane.control.store.database import read_transaction

    with read_transaction(store.engine) as connection:
        rows = connection.execute(
            select(SiteRevisionRow)
            .where(SiteRevisionRow.resource_version > version)
            .order_by(SiteRevisionRow.resource_version)
        ).all()
    return [SiteRevision(r.site, r.revision, r.resource_version, r.document) for r in rows]
