"""Backups: one consistent snapshot of the whole store, as JSON lines.

The snapshot is read in a single read transaction, so it is a state the
store really was in. Watch events are not kept: after a restore every
version up to the backup's counts as compacted, and watchers relist.
Secrets stay sealed (the same key is needed after restore) and tokens stay
hashed — a backup holds no plain-text credential.

The agent port's tables go along: site desired-state revisions (agents that
reconnect after a restore still get the revisions they missed, in order)
and bootstrap tokens and renewal credentials (hashes; agents re-enrol after
a restore as they would before). So do artifacts: their name+version
records, blobs and the blobs' chunks (bytes as base64). Uploads not
committed yet do not (they expire within a day anyway), nor does the
controllers' lease: it names a process of the old store's server.

Format ``fleetplane-backup/v2``: a header line (format, schema revision,
resource version), one line per row (``{"table": key, "row": {...}}``, a
blob chunk of 1 MiB per line at most) and an end line with the row count
per table, so a truncated file is refused. Neither taking nor restoring a
backup holds more than a few rows in memory, however large the blob store.
Restore also reads the whole-object ``fleetplane-backup/v1`` files of
earlier versions (which hold no artifacts).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    LargeBinary,
    Table,
    func,
    insert,
    select,
    true,
    update,
)

from fleetplane.control.store import migrate
from fleetplane.control.store.artifacts import ARTIFACTS, BLOBS, CHUNKS
from fleetplane.control.store.audit import AuditEntry, AuditLog
from fleetplane.control.store.database import read_transaction, write_transaction
from fleetplane.control.store.errors import NotEmpty
from fleetplane.control.store.schema import (
    AUDIT,
    COMPACTED_THROUGH,
    COUNTERS,
    RESOURCE_VERSION,
    RESOURCES,
    TOKENS,
)
from fleetplane.errors import ValidationError
from fleetplane.security.keyring import Keyring

FORMAT = "fleetplane-backup/v2"
LEGACY_FORMAT = "fleetplane-backup/v1"
# The most a restore buffers before inserting: rows, and bytes of their
# lines (a chunk line is ~1.4 MiB).
_INSERT_ROWS = 500
_INSERT_BYTES = 8 * 1024 * 1024


@dataclass(frozen=True)
class BackedUp:
    """One table of the backup: its rows in a stable order, optionally only some of them."""

    table: Table
    order: tuple[Any, ...]
    where: ColumnElement[bool]
    # Rows fetched per round trip while writing (a chunk row is up to 1 MiB).
    fetch: int = 500

    def binary_columns(self) -> frozenset[str]:
        return frozenset(c.name for c in self.table.columns if isinstance(c.type, LargeBinary))


def _tables() -> dict[str, BackedUp]:
    """Backup key → what of which table it holds."""
    # Imported here: the store package must not depend on the controllers' at import time.
    from fleetplane.control.controllers.tables import (
        BootstrapTokenRow,
        RenewalCredentialRow,
        SiteRevisionRow,
    )

    revisions = SiteRevisionRow.__table__
    bootstrap = BootstrapTokenRow.__table__
    renewal = RenewalCredentialRow.__table__
    assert isinstance(revisions, Table) and isinstance(bootstrap, Table)
    assert isinstance(renewal, Table)
    return {
        "resources": BackedUp(RESOURCES, (RESOURCES.c.kind, RESOURCES.c.name), true()),
        "tokens": BackedUp(TOKENS, (TOKENS.c.id,), true()),
        "audit": BackedUp(AUDIT, (AUDIT.c.seq,), true()),
        "siteRevisions": BackedUp(revisions, (revisions.c.site, revisions.c.revision), true()),
        "bootstrapTokens": BackedUp(bootstrap, (bootstrap.c.token_id,), true()),
        "renewalCredentials": BackedUp(renewal, (renewal.c.credential_id,), true()),
        "artifacts": BackedUp(ARTIFACTS, (ARTIFACTS.c.name, ARTIFACTS.c.version), true()),
        "artifactBlobs": BackedUp(BLOBS, (BLOBS.c.digest,), true()),
        # Chunks of committed blobs only: an upload's chunks are owned by ``upload:<id>``.
        "artifactChunks": BackedUp(CHUNKS, (CHUNKS.c.owner, CHUNKS.c.seq),
                                   CHUNKS.c.owner.like("sha256:%"), fetch=4),
    }


# The keys a v1 backup must have (it predates the artifact tables).
_LEGACY_KEYS = ("resources", "tokens", "audit", "siteRevisions", "bootstrapTokens",
                "renewalCredentials")


def write_snapshot(engine: Engine, out: IO[str]) -> dict[str, Any]:
    """Write a snapshot to ``out`` row by row; its header with the row count per table."""
    header: dict[str, Any] = {"format": FORMAT, "schemaRevision": migrate.current_revision(engine)}
    counts: dict[str, int] = {}
    with read_transaction(engine, snapshot=True) as connection:
        header["resourceVersion"] = _counter(connection, RESOURCE_VERSION)
        _write_line(out, header)
        for key, backed in _tables().items():
            counts[key] = 0
            binary = backed.binary_columns()
            query = (select(backed.table).where(backed.where).order_by(*backed.order)
                     .execution_options(yield_per=backed.fetch))
            for row in connection.execute(query):
                _write_line(out, {"table": key, "row": _encoded(dict(row._mapping), binary)})
                counts[key] += 1
    _write_line(out, {"end": {"counts": counts}})
    return {**header, "counts": counts}


def _write_line(out: IO[str], value: dict[str, Any]) -> None:
    out.write(json.dumps(value, sort_keys=True, separators=(",", ":")))
    out.write("\n")


def _encoded(row: dict[str, Any], binary: frozenset[str]) -> dict[str, Any]:
    for name in binary:
        if row[name] is not None:
            row[name] = base64.b64encode(bytes(row[name])).decode("ascii")
    return row


def restore(
    engine: Engine, source: IO[str], *, actor: str, audit_keyring: Keyring | None = None,
    origin: str = "backup",
) -> dict[str, Any]:
    """Load a backup into an empty store in one transaction; its header and counts per table.

    ``origin`` names the source in error messages (the file's path).
    """
    log = AuditLog(audit_keyring)
    tables = _tables()
    hasher = hashlib.sha256()
    lines = _hashed_lines(source, hasher)
    header, rows = _open(lines, origin)
    with write_transaction(engine) as connection:
        _require_empty(connection, tables)
        counts = _insert_rows(connection, tables, rows)
        version = int(header["resourceVersion"])
        for name in (RESOURCE_VERSION, COMPACTED_THROUGH):
            connection.execute(
                update(COUNTERS).where(COUNTERS.c.name == name).values(value=version)
            )
        log.append(
            connection,
            AuditEntry(
                actor=actor,
                action="store.restore",
                kind="Store",
                name="backup",
                after_digest="sha256:" + hasher.hexdigest(),
                details=counts,
            ),
        )
    return {**header, "counts": counts}


Row = tuple[str, dict[str, Any], int]  # (backup key, row, bytes of its line)


def _hashed_lines(source: IO[str], hasher: Any) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(source, start=1):
        hasher.update(line.encode("utf-8"))
        yield number, line


def _open(lines: Iterator[tuple[int, str]], origin: str) -> tuple[dict[str, Any], Iterator[Row]]:
    """The backup's header and its rows (read lazily), whichever format it is in."""
    first = next(lines, None)
    if first is None:
        raise ValidationError(f"{origin}: empty file, not a fleetplane backup")
    try:
        header = json.loads(first[1])
    except ValueError:
        header = None
    if isinstance(header, dict) and header.get("format") == FORMAT:
        _check_header(header, ("resourceVersion",), origin)
        return header, _v2_rows(lines, origin)
    # v1: one JSON object over many lines; it was read whole when written, too.
    text = first[1] + "".join(line for _, line in lines)
    try:
        legacy = json.loads(text)
    except ValueError as error:
        raise ValidationError(f"{origin}: not a fleetplane backup ({error})") from None
    if not isinstance(legacy, dict) or legacy.get("format") != LEGACY_FORMAT:
        raise ValidationError(
            f"{origin}: not a fleetplane backup (expected format {FORMAT!r} or {LEGACY_FORMAT!r})"
        )
    _check_header(legacy, (*_LEGACY_KEYS, "resourceVersion"), origin)
    header = {k: legacy.get(k) for k in ("format", "schemaRevision", "resourceVersion")}
    return header, _v1_rows(legacy)


def _check_header(header: dict[str, Any], required: tuple[str, ...], origin: str) -> None:
    missing = [key for key in required if key not in header]
    if missing:
        raise ValidationError(
            f"{origin}: the backup lacks {', '.join(missing)}; it is truncated or edited"
        )
    revision = header.get("schemaRevision")
    if revision is not None and revision != migrate.head_revision():
        raise ValidationError(
            f"{origin}: the backup was taken at schema revision {revision}, this fleetplane has "
            f"{migrate.head_revision()}; restore it with the fleetplane version that took it, "
            "then upgrade"
        )


def _v2_rows(lines: Iterator[tuple[int, str]], origin: str) -> Iterator[Row]:
    tables = _tables()
    expected: dict[str, int] | None = None
    seen: dict[str, int] = dict.fromkeys(tables, 0)
    for number, line in lines:
        if expected is not None:
            raise ValidationError(f"{origin}:{number}: data after the end line; the file is edited")
        try:
            entry = json.loads(line)
        except ValueError as error:
            raise ValidationError(
                f"{origin}:{number}: not JSON ({error}); the file is damaged"
            ) from None
        if isinstance(entry, dict) and "end" in entry:
            expected = dict(entry["end"].get("counts", {}))
            continue
        key = entry.get("table") if isinstance(entry, dict) else None
        if key not in tables or not isinstance(entry.get("row"), dict):
            raise ValidationError(f"{origin}:{number}: not a row of a known table ({key!r})")
        seen[key] += 1
        yield key, _decoded(entry["row"], tables[key].binary_columns()), len(line)
    if expected is None:
        raise ValidationError(f"{origin}: the end line is missing; the backup is truncated")
    if expected != seen:
        raise ValidationError(
            f"{origin}: the end line counts {expected} rows, the file holds {seen}; "
            "the backup is damaged"
        )


def _v1_rows(legacy: dict[str, Any]) -> Iterator[Row]:
    for key in _LEGACY_KEYS:
        for row in legacy[key]:
            yield key, row, 0


def _decoded(row: dict[str, Any], binary: frozenset[str]) -> dict[str, Any]:
    for name in binary:
        if row.get(name) is not None:
            row[name] = base64.b64decode(row[name])
    return row


def _require_empty(connection: Connection, tables: dict[str, BackedUp]) -> None:
    for key, backed in tables.items():
        count = connection.execute(select(func.count()).select_from(backed.table)).scalar_one()
        if count:
            raise NotEmpty(
                f"the store already holds {count} {key} rows; restore goes only into an "
                "empty store (create a new database, run `fleetplane db upgrade`, restore)"
            )


def _insert_rows(
    connection: Connection, tables: dict[str, BackedUp], rows: Iterator[Row]
) -> dict[str, int]:
    """Insert ``rows`` in batches of one table; the count per table."""
    counts: dict[str, int] = dict.fromkeys(tables, 0)
    pending: list[dict[str, Any]] = []
    pending_key: str | None = None
    pending_bytes = 0

    def flush() -> None:
        nonlocal pending_bytes
        if pending and pending_key is not None:
            connection.execute(insert(tables[pending_key].table), pending)
            pending.clear()
        pending_bytes = 0

    for key, row, size in rows:
        if key != pending_key or len(pending) >= _INSERT_ROWS or pending_bytes >= _INSERT_BYTES:
            flush()
            pending_key = key
        pending.append(row)
        pending_bytes += size
        counts[key] += 1
    flush()
    return counts


def _counter(connection: Connection, name: str) -> int:
    value = connection.execute(select(COUNTERS.c.value).where(COUNTERS.c.name == name)).scalar()
    return int(value or 0)
