"""The audit log table, chained with ``fleetplane.security.audit``.

Entries are appended inside the write transaction of the change they
describe, under the store's write lock, so the chain never forks and an
entry exists exactly when its change does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from fleetplane.control.store.database import read_transaction
from fleetplane.control.store.schema import AUDIT
from fleetplane.security.audit import (
    AuditEvent,
    AuditRecord,
    VerifyResult,
    append,
    record_fields,
    verify,
)
from fleetplane.security.canonical import canonical_json
from fleetplane.security.canonical import digest as canonical_digest
from fleetplane.security.keyring import Keyring

__all__ = ["AuditEntry", "AuditLog", "digest", "digest_text"]

def digest(document: Any) -> str:
    """``security.canonical.digest`` of a resource's JSON document, without its type walk.

    Documents the store digests are decoded JSON (string keys, plain values),
    for which ``json.dumps`` with canonical settings gives the very bytes
    ``canonical_json`` does; the walk that checks every value costs more than
    the hashing when a controller writes thousands of resources at once.
    Anything else (datetimes, NaN) takes the canonical path and its errors.
    """
    try:
        text = json.dumps(document, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return canonical_digest(document)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def digest_text(canonical: str) -> str:
    """:func:`digest` of a value whose canonical JSON text the caller already has."""
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()


_LAST = select(AUDIT).order_by(AUDIT.c.seq.desc()).limit(1)
_INSERT = insert(AUDIT)


@dataclass(frozen=True)
class AuditEntry:
    """What the store records about a change; the time is taken when it is appended."""

    actor: str
    action: str
    kind: str
    name: str
    before_digest: str | None = None
    after_digest: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


class AuditLog:
    """Appends to and reads the chain; ``keyring`` makes the chain HMAC-keyed."""

    def __init__(self, keyring: Keyring | None = None) -> None:
        self.keyring = keyring

    def append(self, connection: Connection, entry: AuditEntry) -> AuditRecord:
        """Append in the caller's write transaction (which holds the write lock)."""
        return self.append_many(connection, [entry])[0]

    def append_many(
        self, connection: Connection, entries: Sequence[AuditEntry]
    ) -> list[AuditRecord]:
        """Append ``entries`` in order with one read of the head and one insert."""
        if not entries:
            return []
        last = connection.execute(_LAST).first()
        previous = _record(last) if last is not None else None
        key = self.keyring.primary if self.keyring is not None else None
        now = datetime.now(UTC)
        records = []
        for entry in entries:
            event = AuditEvent(
                time=now,
                actor=entry.actor,
                action=entry.action,
                kind=entry.kind,
                name=entry.name,
                before_digest=entry.before_digest,
                after_digest=entry.after_digest,
                details=dict(entry.details),
            )
            previous = append(previous, event, key=key)
            records.append(previous)
        connection.execute(_INSERT, [row_values(record) for record in records])
        return records

    def records(
        self, engine: Engine, *, after: int = 0, limit: int | None = None
    ) -> list[AuditRecord]:
        with read_transaction(engine) as connection:
            return list(_records(connection, after=after, limit=limit))

    def verify(self, engine: Engine) -> VerifyResult:
        """Verify the whole chain in one snapshot."""
        with read_transaction(engine, snapshot=True) as connection:
            return verify(_records(connection), keyring=self.keyring)


def _records(
    connection: Connection, *, after: int = 0, limit: int | None = None
) -> Iterator[AuditRecord]:
    query = select(AUDIT).where(AUDIT.c.seq > after).order_by(AUDIT.c.seq)
    if limit is not None:
        query = query.limit(limit)
    for row in connection.execute(query):
        yield _record(row)


def _record(row: Any) -> AuditRecord:
    try:
        details = json.loads(row.details)
    except (TypeError, ValueError):
        # A hand-edited row: keep the text so verification reports the row.
        details = {"unparseable": str(row.details)}
    return AuditRecord(
        seq=int(row.seq),
        time=datetime.fromisoformat(row.time.replace("Z", "+00:00")),
        actor=row.actor,
        action=row.action,
        kind=row.kind,
        name=row.name,
        before_digest=row.before_digest,
        after_digest=row.after_digest,
        details=details if isinstance(details, dict) else {"value": details},
        prev_hash=row.prev_hash,
        hash=row.hash,
    )


def row_values(record: AuditRecord) -> dict[str, Any]:
    """The row of ``record``: the hashed fields, ``details`` as the canonical text hashed."""
    return {
        **record_fields(record),
        "details": canonical_json(record.details).decode("utf-8"),
        "hash": record.hash,
    }
