"""Writes that must share one store transaction with rows of the controllers' own tables.

The store's public methods each run their own transaction; these use its
``run_write`` seam and the same per-row steps (``_insert``/``_update``/
``_update_status``) so the resource, its watch event, its audit entry and
our history row commit together or not at all.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar, cast

from sqlalchemy import Connection, Table, bindparam, delete, func, select

from fleetplane.control.controllers.tables import SiteRevisionRow
from fleetplane.control.store.errors import NotFound
from fleetplane.control.store.records import StoredResource
from fleetplane.control.store.repository import (
    Desired,
    EncodedWrite,
    Prior,
    Store,
    load_many,
)
from fleetplane.control.store.schema import RESOURCES

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
    # The document's JSON as written (canonical), when the writer had it in hand.
    encoded: str | None = field(default=None, compare=False, repr=False)
    # The agent watch's REVISION line for it, once the revision hub has encoded it.
    line: bytes | None = field(default=None, compare=False, repr=False)


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
    Each committed chunk's revisions are handed to this process's
    :func:`revision_feed` before watchers are woken, so the agent port's
    hub need not read them back from the store.
    """
    names = sorted(specs)
    written: list[SiteRevision] = []
    feed, priors = revision_feed(store), _site_priors(store)

    def committed(chunk: _Chunk) -> None:
        # Only what committed is remembered: a rolled-back write's versions are reused.
        priors.remember(chunk.stored)
        feed.add(chunk.revisions)

    for start in range(0, len(names), max(chunk, 1)):
        part = {name: specs[name] for name in names[start : start + max(chunk, 1)]}
        write = partial(_write_site_chunk, store, specs=part, actor=actor, keep=keep)
        written.extend(store.run_write(write, background=True, committed=committed).revisions)
    return written


@dataclass(frozen=True)
class _Chunk:
    revisions: list[SiteRevision]
    stored: list[EncodedWrite]


def _write_site_chunk(
    store: Store,
    connection: Connection,
    *,
    specs: dict[str, dict[str, Any]],
    actor: str,
    keep: int,
) -> _Chunk:
    # One query per table for every site of the chunk, not one per site.
    names = sorted(specs)
    latest = _latest_revisions(connection, names)
    priors = _site_priors(store).current(connection, names)
    changes: list[tuple[Prior | None, Desired]] = []
    revisions: list[int] = []
    for site in names:
        spec = specs[site]
        prior = priors.get(site)
        current = prior.resource if prior is not None else None
        previous = int(current.spec.get("revision", 0)) if current is not None else 0
        if current is not None and _same_content(current.spec, spec):
            continue
        revision = max(previous, latest.get(site, 0)) + 1
        changes.append(
            (
                prior,
                Desired(
                    SDS_KIND,
                    site,
                    {"fleetplane.io/site": site},
                    {},
                    {**spec, "site": site, "revision": revision},
                ),
            )
        )
        revisions.append(revision)
    if not changes:
        return _Chunk([], [])
    if SDS_KIND in store.codec.kinds:  # pragma: no cover - desired states are never sealed
        raise ValueError("SiteDesiredState specs must not be sealed")
    stored = store.write_encoded(connection, changes, actor=actor, action="derive")
    written = [
        SiteRevision(
            item.resource.name,
            revision,
            item.resource.resource_version,
            item.resource.to_document(),
            item.document,
        )
        for item, revision in zip(stored, revisions, strict=True)
    ]
    connection.exec_driver_sql(
        _insert_revision_sql(connection),
        [(w.site, w.revision, w.resource_version, w.encoded) for w in written],
    )
    expired = [{"site": w.site, "through": w.revision - keep} for w in written if w.revision > keep]
    if expired:
        connection.execute(_DELETE_EXPIRED, expired)
    return _Chunk(written, stored)


def _insert_revision_sql(connection: Connection) -> str:
    """The driver's INSERT of a revision row, its document as JSON text (see write_encoded)."""
    dialect = connection.dialect
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    document = f"CAST({mark} AS JSONB)" if dialect.name == "postgresql" else mark
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(c) for c in ("site", "revision", "resource_version", "document"))
    return (
        f"INSERT INTO {quote(REVISIONS.name)} ({columns}) "
        f"VALUES ({mark}, {mark}, {mark}, {document})"
    )


class _SitePriors:
    """The SiteDesiredStates this process wrote last, so a fan-out need not decode them again.

    Each is used only while the store still holds it at the version it was
    written with (one light query per chunk checks); anything else — written
    by another replica, a status write, a restore, a site never seen — is
    loaded from the store as before.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, Prior] = {}

    def current(self, connection: Connection, names: Sequence[str]) -> dict[str, Prior]:
        versions = _current_versions(connection, names)
        with self._lock:
            found = {
                name: prior
                for name in versions
                if (prior := self._known.get(name)) is not None
                and prior.resource.resource_version == versions[name]
            }
        missing = [name for name in versions if name not in found]
        for name, resource in load_many(connection, SDS_KIND, missing).items():
            found[name] = Prior.of(resource)
        return found

    def remember(self, written: Sequence[EncodedWrite]) -> None:
        """Keep what a committed write wrote."""
        with self._lock:
            for item in written:
                self._known[item.resource.name] = Prior(item.resource, item.desired_digest)


_PRIORS: weakref.WeakKeyDictionary[Store, _SitePriors] = weakref.WeakKeyDictionary()
_PER_STORE_LOCK = threading.Lock()
_T = TypeVar("_T")


def _per_store(
    found: weakref.WeakKeyDictionary[Store, _T], store: Store, make: Callable[[], _T]
) -> _T:
    """This process's one ``make()`` for ``store``, made on first use (gone with the store)."""
    with _PER_STORE_LOCK:
        held = found.get(store)
        if held is None:
            held = found[store] = make()
        return held


def _site_priors(store: Store) -> _SitePriors:
    return _per_store(_PRIORS, store, _SitePriors)


_CURRENT_VERSIONS = select(RESOURCES.c.name, RESOURCES.c.resource_version).where(
    RESOURCES.c.kind == bindparam("kind"),
    RESOURCES.c.name.in_(bindparam("names", expanding=True)),
)


def _current_versions(connection: Connection, names: Sequence[str]) -> dict[str, int]:
    """The resource version of each of ``names``' SiteDesiredState that exists."""
    if not names:
        return {}
    rows = connection.execute(_CURRENT_VERSIONS, {"kind": SDS_KIND, "names": list(names)}).all()
    return {name: int(version) for name, version in rows}


class RevisionFeed:
    """Revisions this process committed, handed to its revision hub without a store read.

    The writer adds each chunk right after its commit (before watchers are
    woken); the hub takes the ones the store's revision keys name and reads
    from the store only those it does not find here (written by another
    replica, or dropped: at most ``limit`` are kept, oldest dropped first).
    Nothing is kept until a hub says it reads the feed (:meth:`activate`):
    a process without an agent port holds no revisions.
    """

    def __init__(self, limit: int = 4_096) -> None:
        self.limit = limit
        self._lock = threading.Lock()
        self._revisions: OrderedDict[tuple[str, int], SiteRevision] = OrderedDict()
        self._active = False

    def activate(self) -> None:
        """A reader is there: keep what is added from now on."""
        self._active = True

    def add(self, revisions: Sequence[SiteRevision]) -> None:
        if not self._active:
            return
        with self._lock:
            for revision in revisions:
                self._revisions[(revision.site, revision.revision)] = revision
            while len(self._revisions) > self.limit:
                self._revisions.popitem(last=False)

    def take(self, keys: Sequence[RevisionKey]) -> tuple[list[SiteRevision], list[RevisionKey]]:
        """Those of ``keys`` in hand (same site, revision and version), and the others."""
        found: list[SiteRevision] = []
        missing: list[RevisionKey] = []
        with self._lock:
            for key in keys:
                revision = self._revisions.get((key.site, key.revision))
                if revision is not None and revision.resource_version == key.resource_version:
                    found.append(revision)
                else:
                    missing.append(key)
        return found, missing

    def forget_through(self, version: int) -> None:
        """Drop what was committed at or below ``version`` (the hub has handed it out)."""
        with self._lock:
            stale = [
                key
                for key, revision in self._revisions.items()
                if revision.resource_version <= version
            ]
            for key in stale:
                del self._revisions[key]


_FEEDS: weakref.WeakKeyDictionary[Store, RevisionFeed] = weakref.WeakKeyDictionary()


def revision_feed(store: Store) -> RevisionFeed:
    """This process's :class:`RevisionFeed` for ``store``."""
    return _per_store(_FEEDS, store, RevisionFeed)


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
            select(RESOURCES.c.generation, RESOURCES.c.resource_version, RESOURCES.c.status).where(
                RESOURCES.c.kind == "Placement", RESOURCES.c.name == name
            )
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


@dataclass(frozen=True)
class RevisionKey:
    """Which revision a row is, without its document."""

    site: str
    revision: int
    resource_version: int


def revision_keys_after_version(store: Store, version: int) -> list[RevisionKey]:
    """The keys of every revision written after global version ``version``, in version order."""
    from fleetplane.control.store.database import read_transaction

    with read_transaction(store.engine) as connection:
        rows = connection.execute(
            select(REVISIONS.c.site, REVISIONS.c.revision, REVISIONS.c.resource_version)
            .where(REVISIONS.c.resource_version > version)
            .order_by(REVISIONS.c.resource_version)
        ).all()
    return [RevisionKey(site, int(revision), int(rv)) for site, revision, rv in rows]


def revisions_after_version_in_hand(store: Store, version: int) -> list[SiteRevision]:
    """:func:`revisions_after_version`, taking what this process's feed holds from it.

    Only the revisions' keys are read from the store; documents are read
    (and decoded) only for revisions not in hand.
    """
    keys = revision_keys_after_version(store, version)
    if not keys:
        return []
    found, missing = revision_feed(store).take(keys)
    if missing:
        read = {
            (r.site, r.revision): r
            for r in revisions_after_version(store, min(k.resource_version for k in missing) - 1)
        }
        found += [read[(k.site, k.revision)] for k in missing if (k.site, k.revision) in read]
        found.sort(key=lambda r: r.resource_version)
    return found
