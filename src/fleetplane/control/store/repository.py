"""The resource store: CRUD with optimistic concurrency, atomic apply, the event log.

Every write runs in one write transaction (see ``database.py``) that

1. takes the global write lock,
2. checks the caller's expectations (existence, ``resourceVersion``),
3. allocates one new global resource version per changed object,
4. writes the object, its watch event and its audit entry,

and commits; only then are listeners (the in-process watch notifier) told
the new version. Nothing is ever half-written: any error rolls the whole
transaction back.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, bindparam, delete, func, insert, select, update

from fleetplane.control.diff import FieldChange, diff
from fleetplane.control.store.audit import AuditEntry, AuditLog, digest, digest_text
from fleetplane.control.store.codec import PlainCodec, SpecCodec
from fleetplane.control.store.database import read_transaction, write_transaction
from fleetplane.control.store.errors import AlreadyExists, Conflict, Expired, NotFound
from fleetplane.control.store.records import EventBatch, StoredResource, WatchEvent
from fleetplane.control.store.schema import (
    COMPACTED_THROUGH,
    COUNTERS,
    EVENTS,
    RESOURCE_VERSION,
    RESOURCES,
)
from fleetplane.model.base import API_VERSION
from fleetplane.security.keyring import Keyring

# Called inside the write transaction with the state the write would leave
# behind (every resource, after the change); raises to refuse the write. A
# check with a ``kinds`` attribute (a sequence of kinds) is given only the
# stored resources of those kinds, plus every resource the write changes.
Check = Callable[[Sequence[StoredResource]], None]
Listener = Callable[[int], None]
T = TypeVar("T")
# Compaction runs on every Nth version, so its cost is spread thin.
_COMPACT_EVERY = 64


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ApplyOutcome:
    kind: str
    name: str
    action: str  # created | changed | unchanged
    changes: list[FieldChange] = field(default_factory=list)
    resource_version: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "name": self.name, "action": self.action}
        if self.changes:
            out["changes"] = [change.to_json() for change in self.changes]
        if self.resource_version is not None:
            out["resourceVersion"] = str(self.resource_version)
        return out


@dataclass(frozen=True)
class Desired:
    """What a caller asks a resource to be: the user-controlled parts of a document."""

    kind: str
    name: str
    labels: dict[str, str]
    annotations: dict[str, str]
    spec: dict[str, Any]
    status: dict[str, Any] | None = None
    # metadata.resourceVersion the caller read, for optimistic concurrency.
    expected_version: int | None = None

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Desired:
        """From a document already validated against its kind's model."""
        metadata = document["metadata"]
        expected = metadata.get("resourceVersion")
        return cls(
            kind=document["kind"],
            name=metadata["name"],
            labels=dict(metadata.get("labels") or {}),
            annotations=dict(metadata.get("annotations") or {}),
            spec=dict(document.get("spec") or {}),
            status=document.get("status"),
            expected_version=int(expected) if expected not in (None, "") else None,
        )

    def user_part(self) -> dict[str, Any]:
        return {"labels": self.labels, "annotations": self.annotations, "spec": self.spec}


class WriteGate:
    """This process's writers take turns here before taking the database's write lock.

    The database lock alone would serialise them too, but SQLite's busy
    handler polls with sleeps of up to 100 ms, so a writer that queued behind
    a long transaction starts late; here a waiter is woken the moment the
    gate opens. A *background* writer (a controller writing thousands of
    sites in chunks) lets the foreground writers (agents' status batches,
    people's applies) waiting when it arrives go first, so those wait for at
    most one chunk, never for a whole fan-out; once one turn has passed it
    is next, so a steady stream of status writes cannot starve the fan-out
    either (chunks and foreground turns alternate). Other processes or
    replicas are still serialised by the database lock, taken inside the gate.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._busy = False
        self._foreground_waiting = 0
        # The turn count at which each waiting background writer arrived. One is
        # due once a turn has been taken since; kept here rather than by the
        # waiter itself, because a foreground writer must see it due even
        # before that waiter has woken to notice.
        self._background_arrivals: list[int] = []
        self._turns = 0

    @contextmanager
    def turn(self, *, background: bool = False) -> Iterator[None]:
        with self._condition:
            if background:
                self._wait_background()
            else:
                self._foreground_waiting += 1
                try:
                    while self._busy or self._background_due():
                        self._condition.wait()
                finally:
                    self._foreground_waiting -= 1
            self._busy = True
            self._turns += 1
        try:
            yield
        finally:
            with self._condition:
                self._busy = False
                self._condition.notify_all()

    def waiting(self) -> tuple[int, int]:
        """How many foreground and background writers wait for a turn now."""
        with self._condition:
            return self._foreground_waiting, len(self._background_arrivals)

    def _background_due(self) -> bool:
        return bool(self._background_arrivals) and min(self._background_arrivals) < self._turns

    def _wait_background(self) -> None:
        arrived = self._turns
        self._background_arrivals.append(arrived)
        try:
            while self._busy or (arrived == self._turns and self._foreground_waiting):
                self._condition.wait()
        finally:
            self._background_arrivals.remove(arrived)


class Store:
    """Thread-safe; one per process, shared by the API and the controllers."""

    def __init__(
        self,
        engine: Engine,
        *,
        codec: SpecCodec | None = None,
        event_history: int = 10_000,
        audit_keyring: Keyring | None = None,
    ) -> None:
        self.engine = engine
        self.codec: SpecCodec = codec or PlainCodec()
        self.event_history = event_history
        self.audit = AuditLog(audit_keyring)
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        self.gate = WriteGate()

    # ------------------------------------------------------------ listeners

    def add_listener(self, listener: Listener) -> None:
        """``listener(version)`` runs after every commit that produced a new version."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _committed(self, version: int | None) -> None:
        if version is None:
            return
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(version)

    # ---------------------------------------------------------------- reads

    def current_version(self) -> int:
        with read_transaction(self.engine) as connection:
            return _counter(connection, RESOURCE_VERSION)

    def get(self, kind: str, name: str) -> StoredResource:
        with read_transaction(self.engine) as connection:
            found = _load(connection, kind, name)
        if found is None:
            raise NotFound(kind, name)
        return found

    def list_resources(
        self,
        kind: str | None = None,
        *,
        where: Callable[[dict[str, str]], bool] | None = None,
        kinds: Sequence[str] | None = None,
    ) -> tuple[list[StoredResource], int]:
        """Resources (of one kind, of ``kinds``, or all) and the version this view is at."""
        with read_transaction(self.engine, snapshot=True) as connection:
            version = _counter(connection, RESOURCE_VERSION)
            query = select(RESOURCES).order_by(RESOURCES.c.kind, RESOURCES.c.name)
            if kind is not None:
                query = query.where(RESOURCES.c.kind == kind)
            if kinds is not None:
                query = query.where(RESOURCES.c.kind.in_(list(kinds)))
            rows = connection.execute(query).all()
        items = [_record(row) for row in rows]
        if where is not None:
            items = [item for item in items if where(item.labels)]
        return items, version

    def events_since(
        self,
        after: int,
        *,
        kind: str | None = None,
        kinds: Sequence[str] | None = None,
        limit: int = 500,
    ) -> EventBatch:
        """Events with versions above ``after``, in order; 410-style :class:`Expired` if gone.

        ``kind`` or ``kinds`` keep only events of those kinds (filtered in
        the query: the others are never decoded). ``through`` is the version
        the caller may resume from next: every event up to it (of any kind)
        has been committed and considered.
        """
        with read_transaction(self.engine, snapshot=True) as connection:
            compacted = _counter(connection, COMPACTED_THROUGH)
            if after < compacted:
                raise Expired(after, compacted)
            latest = _counter(connection, RESOURCE_VERSION)
            query = (
                select(EVENTS)
                .where(EVENTS.c.resource_version > after, EVENTS.c.resource_version <= latest)
                .order_by(EVENTS.c.resource_version)
                .limit(limit)
            )
            if kind is not None:
                query = query.where(EVENTS.c.kind == kind)
            if kinds is not None:
                query = query.where(EVENTS.c.kind.in_(list(kinds)))
            rows = connection.execute(query).all()
        events = [
            WatchEvent(
                type=row.type,
                resource_version=row.resource_version,
                kind=row.kind,
                name=row.name,
                object=row.object,
                prev_labels=row.prev_labels,
            )
            for row in rows
        ]
        through = events[-1].resource_version if len(events) == limit else max(latest, after)
        return EventBatch(events, through)

    def statuses(self, kind: str) -> dict[str, dict[str, Any] | None]:
        """Every resource of ``kind``: its status by name (no spec or metadata decoded)."""
        with read_transaction(self.engine) as connection:
            rows = connection.execute(
                select(RESOURCES.c.name, RESOURCES.c.status).where(RESOURCES.c.kind == kind)
            ).all()
        return {row.name: row.status for row in rows}

    def reveal(self, resource: StoredResource) -> StoredResource:
        """The resource with its spec unsealed (Secrets); callers authorise first."""
        if resource.kind not in self.codec.kinds:
            return resource
        spec = self.codec.open(resource.kind, resource.name, resource.spec)
        return _replace_spec(resource, spec)

    # --------------------------------------------------------------- writes

    def create(self, desired: Desired, *, actor: str, check: Check | None = None) -> StoredResource:
        def write(connection: Connection) -> StoredResource:
            if _load(connection, desired.kind, desired.name) is not None:
                raise AlreadyExists(desired.kind, desired.name)
            _run_check(connection, check, [(desired.kind, desired.name, self._preview(desired))])
            return self._insert(connection, desired, actor, "create")

        return self.run_write(write)

    def replace(
        self, desired: Desired, *, actor: str, check: Check | None = None
    ) -> StoredResource:
        """Replace labels, annotations and spec; status is kept (it has its own writer)."""

        def write(connection: Connection) -> StoredResource:
            current = self._current(connection, desired)
            _run_check(connection, check, [(desired.kind, desired.name, self._preview(desired))])
            return self._update(connection, current, desired, actor, "replace")

        return self.run_write(write)

    def modify(
        self,
        kind: str,
        name: str,
        change: Callable[[StoredResource], Desired],
        *,
        actor: str,
        status: bool = False,
        check: Check | None = None,
    ) -> StoredResource:
        """Read-modify-write in one transaction (merge patches): ``change`` sees the latest."""

        def write(connection: Connection) -> StoredResource:
            current = _load(connection, kind, name)
            if current is None:
                raise NotFound(kind, name)
            desired = change(self.reveal(current))
            _expect(current, desired.expected_version)
            if status:
                return self._update_status(connection, current, desired.status)
            _run_check(connection, check, [(kind, name, self._preview(desired))])
            return self._update(connection, current, desired, actor, "patch")

        return self.run_write(write)

    def replace_status(
        self, kind: str, name: str, status: dict[str, Any] | None, *,
        expected_version: int | None = None,
    ) -> StoredResource:
        """Write only the status; not audited (heartbeats and reports are not desired state)."""

        def write(connection: Connection) -> StoredResource:
            current = _load(connection, kind, name)
            if current is None:
                raise NotFound(kind, name)
            _expect(current, expected_version)
            return self._update_status(connection, current, status)

        return self.run_write(write)

    def delete(
        self, kind: str, name: str, *, actor: str, expected_version: int | None = None
    ) -> StoredResource:
        def write(connection: Connection) -> StoredResource:
            current = _load(connection, kind, name)
            if current is None:
                raise NotFound(kind, name)
            _expect(current, expected_version)
            version = _next_version(connection)
            connection.execute(
                delete(RESOURCES).where(RESOURCES.c.kind == kind, RESOURCES.c.name == name)
            )
            gone = _with_version(current, version)
            self._event(connection, "DELETED", gone, current.labels)
            self.audit.append(
                connection,
                AuditEntry(
                    actor=actor,
                    action="delete",
                    kind=kind,
                    name=name,
                    before_digest=digest(current.desired()),
                ),
            )
            return gone

        return self.run_write(write)

    def apply(
        self,
        batch: Sequence[Desired],
        *,
        actor: str,
        dry_run: bool = False,
        check: Check | None = None,
    ) -> list[ApplyOutcome]:
        """Create or update every resource of ``batch`` in one transaction, or none of them."""

        def plan(connection: Connection) -> list[tuple[Desired, StoredResource | None, str]]:
            steps = []
            for desired in batch:
                current = _load(connection, desired.kind, desired.name)
                if current is not None:
                    _expect(current, desired.expected_version)
                elif desired.expected_version is not None:
                    raise NotFound(desired.kind, desired.name)
                steps.append((desired, current, self._action(current, desired)))
            previews = [(d.kind, d.name, self._preview(d)) for d in batch]
            _run_check(connection, check, previews)
            return steps

        def outcome(
            desired: Desired, current: StoredResource | None, action: str, version: int | None
        ) -> ApplyOutcome:
            before = self._shown(current) if current is not None else None
            changes = (
                diff(before, self._shown_desired(desired)) if action == "changed" else []
            )
            return ApplyOutcome(desired.kind, desired.name, action, changes, version)

        if dry_run:
            with read_transaction(self.engine, snapshot=True) as connection:
                return [outcome(d, c, a, None) for d, c, a in plan(connection)]

        def write(connection: Connection) -> list[ApplyOutcome]:
            outcomes = []
            for desired, current, action in plan(connection):
                version: int | None = None
                if action == "created":
                    version = self._insert(connection, desired, actor, "apply").resource_version
                elif action == "changed" and current is not None:
                    version = self._update(
                        connection, current, desired, actor, "apply"
                    ).resource_version
                else:
                    version = current.resource_version if current is not None else None
                outcomes.append(outcome(desired, current, action, version))
            return outcomes

        return self.run_write(write)

    # ------------------------------------------------------------ bulk writes
    #
    # For controllers and batched heartbeats writing hundreds or thousands of
    # resources in one transaction: the same rows as the per-resource steps
    # below, but one statement per table instead of several per resource
    # (per-statement overhead, not the database, bounds those writes).

    def write_many(
        self,
        connection: Connection,
        changes: Sequence[tuple[StoredResource | None, Desired]],
        *,
        actor: str,
        action: str,
    ) -> list[StoredResource]:
        """Create (current None) or update each resource, in the caller's write transaction.

        Same outcome as ``_insert``/``_update`` called in order: versions in
        the order given, one event and one audit entry per changed resource;
        unchanged resources come back as they were.
        """
        results: list[StoredResource | None] = []
        changed: list[tuple[int, StoredResource | None, StoredResource | None, Desired]] = []
        for index, (current, desired) in enumerate(changes):
            opened = self.reveal(current) if current is not None else None
            if current is not None and opened is not None and (
                opened.desired() == desired.user_part()
            ):
                results.append(current)
                continue
            results.append(current)  # replaced below
            changed.append((index, current, opened, desired))
        versions = _allocate_versions(connection, len(changed))
        now = utc_now()
        created: list[StoredResource] = []
        saved: list[tuple[StoredResource, StoredResource]] = []
        entries: list[AuditEntry] = []
        for (index, current, opened, desired), version in zip(changed, versions, strict=True):
            after = digest(desired.user_part())
            if current is None or opened is None:
                written = self._created(desired, version, now)
                created.append(written)
                before = None
            else:
                written = self._updated(current, opened, desired, version, now)
                saved.append((current, written))
                before = digest(opened.desired())
            results[index] = written
            entries.append(AuditEntry(actor, action, desired.kind, desired.name, before, after))
        if created:
            connection.execute(_INSERT_RESOURCE, [_row_values(r) for r in created])
        self._save_many(connection, saved, added=created)
        self.audit.append_many(connection, entries)
        return [result for result in results if result is not None]

    def update_statuses(
        self,
        connection: Connection,
        changes: Sequence[tuple[StoredResource, dict[str, Any] | None]],
    ) -> list[StoredResource]:
        """Write each resource's new status (not audited), in the caller's write transaction."""
        results = [current for current, _ in changes]
        changed = [
            (index, current, status)
            for index, (current, status) in enumerate(changes)
            if current.status != status
        ]
        versions = _allocate_versions(connection, len(changed))
        now = utc_now()
        saved = []
        for (index, current, status), version in zip(changed, versions, strict=True):
            updated = replace(current, resource_version=version, status=status, updated_at=now)
            saved.append((current, updated))
            results[index] = updated
        self._save_many(connection, saved, status_only=True)
        return results

    def write_encoded(
        self,
        connection: Connection,
        changes: Sequence[tuple[Prior | None, Desired]],
        *,
        actor: str,
        action: str,
    ) -> list[EncodedWrite]:
        """Create (prior None) or update each resource, its JSON encoded once, in the caller's
        write transaction.

        The same rows, events and audit entries as :meth:`write_many` for
        resources that all change (a controller's fan-out), but each new
        document is encoded to canonical JSON once: that text is the event's
        object, the spec and labels are its parts in the resource row, and
        the audit digest is hashed over the same canonical bytes
        (``security.canonical.digest``). ``Prior.desired_digest`` spares
        re-digesting what the caller already knows. Statements are the
        driver's own, compiled once per dialect: SQLAlchemy's per-row
        parameter processing cost more than the database's work. Kinds the
        codec seals are refused (their specs are not written as given).
        """
        if not changes:
            return []
        statements = _encoded_statements(connection)
        versions = _allocate_versions(connection, len(changes))
        now = utc_now()
        written: list[EncodedWrite] = []
        inserts: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        events: list[tuple[Any, ...]] = []
        entries: list[AuditEntry] = []
        for (prior, desired), version in zip(changes, versions, strict=True):
            if desired.kind in self.codec.kinds:
                raise ValueError(f"write_encoded cannot write sealed kind {desired.kind}")
            labels = json_text(desired.labels)
            annotations = json_text(desired.annotations)
            spec = json_text(desired.spec)
            status = json_text(desired.status if prior is None else prior.resource.status)
            after = digest_text(
                '{"annotations":' + annotations + ',"labels":' + labels + ',"spec":' + spec + "}"
            )
            if prior is None:
                resource = self._created(desired, version, now)
                inserts.append((
                    resource.kind, resource.name, resource.uid, version, resource.generation,
                    labels, annotations, spec, status, now, now,
                ))
                type_, prev_labels, before = "ADDED", None, None
            else:
                current = prior.resource
                resource = self._updated(current, current, desired, version, now)
                updates.append((
                    version, resource.generation, labels, annotations, spec, status, now,
                    current.kind, current.name, current.resource_version,
                ))
                type_, prev_labels = "MODIFIED", json_text(current.labels)
                before = prior.desired_digest
            document = _document_text(resource, labels, annotations, spec, status)
            events.append((version, type_, resource.kind, resource.name, document, prev_labels,
                           now))
            written.append(EncodedWrite(resource, document, after))
            entries.append(AuditEntry(actor, action, resource.kind, resource.name, before, after))
        if inserts:
            connection.exec_driver_sql(statements.insert_resource, inserts)
        if updates:
            result = connection.exec_driver_sql(statements.update_resource, updates)
            if connection.dialect.supports_sane_multi_rowcount and result.rowcount != len(updates):
                first = updates[0]
                raise Conflict(first[7], first[8], first[9], first[0])
        connection.exec_driver_sql(statements.insert_event, events)
        first_version, last_version = versions[0], versions[-1]
        if last_version // _COMPACT_EVERY > (first_version - 1) // _COMPACT_EVERY:
            self._compact(connection, last_version)
        self.audit.append_many(connection, entries)
        return written

    def _created(self, desired: Desired, version: int, now: str) -> StoredResource:
        return StoredResource(
            kind=desired.kind,
            name=desired.name,
            uid=str(uuid.uuid4()),
            resource_version=version,
            generation=1,
            labels=desired.labels,
            annotations=desired.annotations,
            spec=self._seal(desired.kind, desired.name, desired.spec),
            status=desired.status,
            created_at=now,
            updated_at=now,
        )

    def _updated(
        self,
        current: StoredResource,
        opened: StoredResource,
        desired: Desired,
        version: int,
        now: str,
    ) -> StoredResource:
        spec_changed = opened.spec != desired.spec
        return StoredResource(
            kind=current.kind,
            name=current.name,
            uid=current.uid,
            resource_version=version,
            generation=current.generation + (1 if spec_changed else 0),
            labels=desired.labels,
            annotations=desired.annotations,
            spec=(
                self._seal(current.kind, current.name, desired.spec)
                if spec_changed
                else current.spec
            ),
            status=current.status,
            created_at=current.created_at,
            updated_at=now,
        )

    def _save_many(
        self,
        connection: Connection,
        saved: Sequence[tuple[StoredResource, StoredResource]],
        *,
        added: Sequence[StoredResource] = (),
        status_only: bool = False,
    ) -> None:
        """UPDATE ``saved`` (current → updated) and write the events of those and of ``added``.

        ``status_only``: only the status changed, so only it, the version and
        the update time are written (labels and spec are not encoded again).
        """
        if saved:
            if status_only:
                statement, rows = _UPDATE_STATUS, [
                    {
                        "new_resource_version": new.resource_version,
                        "new_status": new.status,
                        "new_updated_at": new.updated_at,
                        "old_kind": old.kind,
                        "old_name": old.name,
                        "old_version": old.resource_version,
                    }
                    for old, new in saved
                ]
            else:
                statement, rows = _UPDATE_RESOURCE, [
                    {
                        **{f"new_{key}": value for key, value in _row_values(new).items()},
                        "old_kind": old.kind,
                        "old_name": old.name,
                        "old_version": old.resource_version,
                    }
                    for old, new in saved
                ]
            result = connection.execute(statement, rows)
            if connection.dialect.supports_sane_multi_rowcount and result.rowcount != len(saved):
                old, new = saved[0]
                raise Conflict(old.kind, old.name, old.resource_version, new.resource_version)
        events = [_event_values("ADDED", r, None) for r in added] + [
            _event_values("MODIFIED", new, old.labels) for old, new in saved
        ]
        if not events:
            return
        connection.execute(_INSERT_EVENT, events)
        first = min(e["resource_version"] for e in events)
        last = max(e["resource_version"] for e in events)
        # Compact when the range crossed a multiple, as one write at a time would have.
        if last // _COMPACT_EVERY > (first - 1) // _COMPACT_EVERY:
            self._compact(connection, last)

    # ------------------------------------------------------------- internals

    def run_write(
        self,
        body: Callable[[Connection], T],
        *,
        background: bool = False,
        committed: Callable[[T], None] | None = None,
    ) -> T:
        """Run ``body`` in a write transaction; listeners hear the new version after commit.

        For writes that must share the transaction (token records with their
        audit entry, controllers writing several tables at once).
        ``background``: let this process's other waiting writers go first
        (see :class:`WriteGate`). ``committed(result)`` runs after the commit
        and before the listeners hear of it (so what it publishes in process
        is there when a woken watcher looks); never for a rolled-back write.
        """
        with self.gate.turn(background=background), write_transaction(self.engine) as connection:
            result = body(connection)
            version = _counter(connection, RESOURCE_VERSION)
        try:
            if committed is not None:
                committed(result)
        finally:
            self._committed(version)
        return result

    def _current(self, connection: Connection, desired: Desired) -> StoredResource:
        current = _load(connection, desired.kind, desired.name)
        if current is None:
            raise NotFound(desired.kind, desired.name)
        _expect(current, desired.expected_version)
        return current

    def _action(self, current: StoredResource | None, desired: Desired) -> str:
        if current is None:
            return "created"
        if self.reveal(current).desired() == desired.user_part():
            return "unchanged"
        return "changed"

    def _seal(self, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return self.codec.seal(kind, name, spec) if kind in self.codec.kinds else spec

    def _preview(self, desired: Desired) -> StoredResource:
        now = utc_now()
        return StoredResource(
            desired.kind, desired.name, "", 0, 0, desired.labels, desired.annotations,
            desired.spec, desired.status, now, now,
        )

    def _shown(self, resource: StoredResource) -> dict[str, Any]:
        opened = self.reveal(resource)
        return self._shown_desired(
            Desired(opened.kind, opened.name, opened.labels, opened.annotations, opened.spec)
        )

    def _shown_desired(self, desired: Desired) -> dict[str, Any]:
        spec = desired.spec
        if desired.kind in self.codec.kinds:
            spec = self.codec.redact(desired.kind, desired.name, spec)
        return {
            "metadata": {"labels": desired.labels, "annotations": desired.annotations},
            "spec": spec,
        }

    def _insert(
        self, connection: Connection, desired: Desired, actor: str, action: str
    ) -> StoredResource:
        created = self._created(desired, _next_version(connection), utc_now())
        connection.execute(_INSERT_RESOURCE, _row_values(created))
        self._event(connection, "ADDED", created, None)
        self.audit.append(
            connection,
            AuditEntry(
                actor=actor,
                action=action,
                kind=desired.kind,
                name=desired.name,
                after_digest=digest(desired.user_part()),
            ),
        )
        return created

    def announce(
        self, connection: Connection, kind: str, name: str, spec: dict[str, Any]
    ) -> int:
        """Log an ADDED event for a record kept outside ``resources`` (artifacts); its version.

        Controllers learn of changes only from the event log, so a record
        they derive from must pass through it too. No resource row is
        written: watches are per resource kind and never list such a kind.
        """
        now = utc_now()
        record = StoredResource(
            kind=kind, name=name, uid=str(uuid.uuid4()),
            resource_version=_next_version(connection), generation=1, labels={},
            annotations={}, spec=spec, status=None, created_at=now, updated_at=now,
        )
        self._event(connection, "ADDED", record, None)
        return record.resource_version

    def _update(
        self,
        connection: Connection,
        current: StoredResource,
        desired: Desired,
        actor: str,
        action: str,
    ) -> StoredResource:
        opened = self.reveal(current)
        if opened.desired() == desired.user_part():
            return current
        spec_changed = opened.spec != desired.spec
        updated = StoredResource(
            kind=current.kind,
            name=current.name,
            uid=current.uid,
            resource_version=_next_version(connection),
            generation=current.generation + (1 if spec_changed else 0),
            labels=desired.labels,
            annotations=desired.annotations,
            spec=(
                self._seal(current.kind, current.name, desired.spec)
                if spec_changed
                else current.spec
            ),
            status=current.status,
            created_at=current.created_at,
            updated_at=utc_now(),
        )
        self._save(connection, current, updated)
        self.audit.append(
            connection,
            AuditEntry(
                actor=actor,
                action=action,
                kind=current.kind,
                name=current.name,
                before_digest=digest(opened.desired()),
                after_digest=digest(desired.user_part()),
            ),
        )
        return updated

    def _update_status(
        self, connection: Connection, current: StoredResource, status: dict[str, Any] | None
    ) -> StoredResource:
        if current.status == status:
            return current
        updated = StoredResource(
            **{
                **current.__dict__,
                "resource_version": _next_version(connection),
                "status": status,
                "updated_at": utc_now(),
            }
        )
        self._save(connection, current, updated)
        return updated

    def _save(
        self, connection: Connection, current: StoredResource, updated: StoredResource
    ) -> None:
        result = connection.execute(
            _UPDATE_RESOURCE,
            {
                **{f"new_{key}": value for key, value in _row_values(updated).items()},
                "old_kind": current.kind,
                "old_name": current.name,
                "old_version": current.resource_version,
            },
        )
        if result.rowcount != 1:
            raise Conflict(
                current.kind, current.name, current.resource_version, updated.resource_version
            )
        self._event(connection, "MODIFIED", updated, current.labels)

    def _event(
        self,
        connection: Connection,
        type_: str,
        resource: StoredResource,
        prev_labels: dict[str, str] | None,
    ) -> None:
        connection.execute(_INSERT_EVENT, _event_values(type_, resource, prev_labels))
        if resource.resource_version % _COMPACT_EVERY == 0:
            self._compact(connection, resource.resource_version)

    def _compact(self, connection: Connection, version: int) -> None:
        horizon = version - self.event_history
        if horizon <= _counter(connection, COMPACTED_THROUGH):
            return
        connection.execute(delete(EVENTS).where(EVENTS.c.resource_version <= horizon))
        connection.execute(
            update(COUNTERS).where(COUNTERS.c.name == COMPACTED_THROUGH).values(value=horizon)
        )


# ------------------------------------------------------------------ helpers


# Statements on the write path are built once with bound parameters: building
# and cache-keying a statement per call costs more CPU than SQLite's work.
_COLUMNS = [column.name for column in RESOURCES.columns]
_INSERT_RESOURCE = insert(RESOURCES)
_INSERT_EVENT = insert(EVENTS)
_UPDATE_RESOURCE = (
    update(RESOURCES)
    .where(
        RESOURCES.c.kind == bindparam("old_kind"),
        RESOURCES.c.name == bindparam("old_name"),
        # Belt and braces: the write lock already makes this hold.
        RESOURCES.c.resource_version == bindparam("old_version"),
    )
    .values({name: bindparam(f"new_{name}") for name in _COLUMNS})
)
_UPDATE_STATUS = (
    update(RESOURCES)
    .where(
        RESOURCES.c.kind == bindparam("old_kind"),
        RESOURCES.c.name == bindparam("old_name"),
        RESOURCES.c.resource_version == bindparam("old_version"),
    )
    .values({name: bindparam(f"new_{name}") for name in
             ("resource_version", "status", "updated_at")})
)
_SELECT_RESOURCE = select(RESOURCES).where(
    RESOURCES.c.kind == bindparam("kind"), RESOURCES.c.name == bindparam("name")
)
_SELECT_NAMED = select(RESOURCES).where(
    RESOURCES.c.kind == bindparam("kind"), RESOURCES.c.name.in_(bindparam("names", expanding=True))
)
# Names per IN list: far below every backend's bound-parameter limit.
_IN_CHUNK = 500
_ADVANCE_VERSION = (
    update(COUNTERS).where(COUNTERS.c.name == RESOURCE_VERSION).returning(COUNTERS.c.value)
)
_SELECT_COUNTER = select(COUNTERS.c.value).where(COUNTERS.c.name == bindparam("name"))
_NEXT_VERSION = (
    update(COUNTERS)
    .where(COUNTERS.c.name == RESOURCE_VERSION)
    .values(value=COUNTERS.c.value + 1)
    .returning(COUNTERS.c.value)
)


@dataclass(frozen=True)
class Prior:
    """A resource's current state as a writer of :meth:`Store.write_encoded` knows it."""

    resource: StoredResource
    # ``audit.digest(resource.desired())``: the audit entry's before digest.
    desired_digest: str

    @classmethod
    def of(cls, resource: StoredResource) -> Prior:
        return cls(resource, digest(resource.desired()))


@dataclass(frozen=True)
class EncodedWrite:
    """A resource written by :meth:`Store.write_encoded`, with the JSON it was written as."""

    resource: StoredResource
    # Canonical JSON of ``resource.to_document()``: the event's object, as stored.
    document: str
    # ``audit.digest(resource.desired())``, as hashed for the audit entry.
    desired_digest: str


def json_text(value: Any) -> str:
    """Canonical JSON text of decoded JSON (``security.canonical`` bytes, as text)."""
    return _CANONICAL.encode(value)


_CANONICAL = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
)


def _document_text(
    resource: StoredResource, labels: str, annotations: str, spec: str, status: str
) -> str:
    """``json_text(resource.to_document())`` from the parts already encoded (keys in order)."""
    metadata = json_text({
        "annotations": resource.annotations, "creationTimestamp": resource.created_at,
        "generation": resource.generation, "labels": resource.labels, "name": resource.name,
        "resourceVersion": str(resource.resource_version), "uid": resource.uid,
        "updateTimestamp": resource.updated_at,
    })
    text = (
        '{"apiVersion":' + json_text(API_VERSION) + ',"kind":' + json_text(resource.kind)
        + ',"metadata":' + metadata + ',"spec":' + spec
    )
    return text + ("}" if resource.status is None else ',"status":' + status + "}")


@dataclass(frozen=True)
class _EncodedStatements:
    insert_resource: str
    update_resource: str
    insert_event: str


_ENCODED_STATEMENTS: dict[str, _EncodedStatements] = {}


def _encoded_statements(connection: Connection) -> _EncodedStatements:
    """The driver's SQL for :meth:`Store.write_encoded`, built once per dialect.

    Parameters are positional (qmark on SQLite, format on psycopg); JSON
    columns get their text as is (SQLite keeps JSON as text; PostgreSQL casts
    it to JSONB).
    """
    dialect = connection.dialect
    key = f"{dialect.name}:{dialect.paramstyle}"
    found = _ENCODED_STATEMENTS.get(key)
    if found is not None:
        return found
    if dialect.paramstyle == "qmark":
        mark = "?"
    elif dialect.paramstyle in ("format", "pyformat"):
        mark = "%s"
    else:  # pragma: no cover - the store supports SQLite and psycopg only
        raise ValueError(f"unsupported paramstyle {dialect.paramstyle}")
    json_mark = f"CAST({mark} AS JSONB)" if dialect.name == "postgresql" else mark
    quote = dialect.identifier_preparer.quote
    documents = {"labels", "annotations", "spec", "status", "object", "prev_labels"}

    def value(column: str) -> str:
        return json_mark if column in documents else mark

    def insert_sql(table: str, columns: Sequence[str]) -> str:
        return (
            f"INSERT INTO {quote(table)} ({', '.join(quote(c) for c in columns)}) "
            f"VALUES ({', '.join(value(c) for c in columns)})"
        )

    changed = ("resource_version", "generation", "labels", "annotations", "spec", "status",
               "updated_at")
    update = (
        f"UPDATE {quote(RESOURCES.name)} SET "
        + ", ".join(f"{quote(c)} = {value(c)}" for c in changed)
        + f" WHERE {quote('kind')} = {mark} AND {quote('name')} = {mark}"
        f" AND {quote('resource_version')} = {mark}"
    )
    found = _EncodedStatements(
        insert_resource=insert_sql(RESOURCES.name, _COLUMNS),
        update_resource=update,
        insert_event=insert_sql(EVENTS.name, ["resource_version", "type", "kind", "name",
                                              "object", "prev_labels", "created_at"]),
    )
    _ENCODED_STATEMENTS[key] = found
    return found


def _event_values(
    type_: str, resource: StoredResource, prev_labels: dict[str, str] | None
) -> dict[str, Any]:
    return {
        "resource_version": resource.resource_version,
        "type": type_,
        "kind": resource.kind,
        "name": resource.name,
        "object": resource.to_document(),
        "prev_labels": prev_labels,
        "created_at": resource.updated_at,
    }


def _allocate_versions(connection: Connection, count: int) -> range:
    """``count`` consecutive new versions in one statement (under the write lock)."""
    if count == 0:
        return range(0)
    last = int(
        connection.execute(
            _ADVANCE_VERSION.values(value=COUNTERS.c.value + count)
        ).scalar_one()
    )
    return range(last - count + 1, last + 1)


def load_many(connection: Connection, kind: str, names: Sequence[str]) -> dict[str, StoredResource]:
    """The resources of ``kind`` among ``names`` that exist, by name (chunked IN queries)."""
    found: dict[str, StoredResource] = {}
    for start in range(0, len(names), _IN_CHUNK):
        rows = connection.execute(
            _SELECT_NAMED, {"kind": kind, "names": list(names[start:start + _IN_CHUNK])}
        ).all()
        for row in rows:
            found[row.name] = _record(row)
    return found


def _counter(connection: Connection, name: str) -> int:
    value = connection.execute(_SELECT_COUNTER, {"name": name}).scalar()
    return int(value or 0)


def _next_version(connection: Connection) -> int:
    """One more than the last version; runs under the write lock, so in commit order."""
    return int(connection.execute(_NEXT_VERSION).scalar_one())


def _load(connection: Connection, kind: str, name: str) -> StoredResource | None:
    row = connection.execute(_SELECT_RESOURCE, {"kind": kind, "name": name}).first()
    return _record(row) if row is not None else None


def _record(source: Any) -> StoredResource:
    """A row of ``select(RESOURCES)`` (Core rows: columns as attributes)."""
    return StoredResource(
        kind=source.kind,
        name=source.name,
        uid=source.uid,
        resource_version=int(source.resource_version),
        generation=int(source.generation),
        labels=dict(source.labels or {}),
        annotations=dict(source.annotations or {}),
        spec=dict(source.spec or {}),
        status=source.status,
        created_at=source.created_at,
        updated_at=source.updated_at,
    )


def _row_values(resource: StoredResource) -> dict[str, Any]:
    return {
        "kind": resource.kind,
        "name": resource.name,
        "uid": resource.uid,
        "resource_version": resource.resource_version,
        "generation": resource.generation,
        "labels": resource.labels,
        "annotations": resource.annotations,
        "spec": resource.spec,
        "status": resource.status,
        "created_at": resource.created_at,
        "updated_at": resource.updated_at,
    }


def _expect(current: StoredResource, expected: int | None) -> None:
    if expected is not None and expected != current.resource_version:
        raise Conflict(current.kind, current.name, expected, current.resource_version)


def _with_version(resource: StoredResource, version: int) -> StoredResource:
    return StoredResource(**{**resource.__dict__, "resource_version": version})


def _replace_spec(resource: StoredResource, spec: dict[str, Any]) -> StoredResource:
    return StoredResource(**{**resource.__dict__, "spec": spec})


def _run_check(
    connection: Connection,
    check: Check | None,
    changes: Iterable[tuple[str, str, StoredResource]],
) -> None:
    if check is None:
        return
    query = select(RESOURCES)
    # A check that names the kinds it looks at (``kinds``) is given only those
    # from the store: the thousands of derived SiteDesiredStates are not decoded.
    kinds: Sequence[str] | None = getattr(check, "kinds", None)
    if kinds is not None:
        query = query.where(RESOURCES.c.kind.in_(list(kinds)))
    merged = {
        (resource.kind, resource.name): resource
        for resource in (_record(row) for row in connection.execute(query).all())
    }
    for kind, name, preview in changes:
        merged[(kind, name)] = preview
    check(list(merged.values()))


def count_resources(engine: Engine) -> int:
    with read_transaction(engine) as connection:
        return int(connection.execute(select(func.count()).select_from(RESOURCES)).scalar_one())
