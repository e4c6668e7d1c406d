"""Backups: one consistent snapshot of resources, tokens and the audit log, as JSON.

The snapshot is read in a single read transaction, so it is a state the
store really was in. Watch events are not kept: after a restore every
version up to the backup's counts as compacted, and watchers relist.
Secrets stay sealed (the same key is needed after restore) and tokens stay
hashed — a backup holds no plain-text credential.

The agent port's tables go along: site desired-state revisions (agents that
reconnect after a restore still get the revisions they missed, in order)
and bootstrap tokens and renewal credentials (hashes; agents re-enrol after
a restore as they would before). The controllers' lease does not: it names
a process of the old store's server.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, Table, func, insert, select, update

from fleetplane.control.store import migrate
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
from fleetplane.security.canonical import digest
from fleetplane.security.keyring import Keyring

FORMAT = "fleetplane-backup/v1"


def _tables() -> dict[str, tuple[Table, tuple[Any, ...]]]:
    """Backup key → (table, order of its rows)."""
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
        "resources": (RESOURCES, (RESOURCES.c.kind, RESOURCES.c.name)),
        "tokens": (TOKENS, (TOKENS.c.id,)),
        "audit": (AUDIT, (AUDIT.c.seq,)),
        "siteRevisions": (revisions, (revisions.c.site, revisions.c.revision)),
        "bootstrapTokens": (bootstrap, (bootstrap.c.token_id,)),
        "renewalCredentials": (renewal, (renewal.c.credential_id,)),
    }


def snapshot(engine: Engine) -> dict[str, Any]:
    with read_transaction(engine, snapshot=True) as connection:
        version = _counter(connection, RESOURCE_VERSION)
        tables = {
            key: [dict(row._mapping) for row in connection.execute(
                select(model).order_by(*order)
            )]
            for key, (model, order) in _tables().items()
        }
    return {
        "format": FORMAT,
        "schemaRevision": migrate.current_revision(engine),
        "resourceVersion": version,
        **tables,
    }


def restore(
    engine: Engine, backup: Any, *, actor: str, audit_keyring: Keyring | None = None
) -> dict[str, int]:
    """Load ``backup`` into an empty store; counts of rows restored per table."""
    _check_format(backup)
    log = AuditLog(audit_keyring)
    tables = {key: model for key, (model, _) in _tables().items()}
    with write_transaction(engine) as connection:
        for key, model in tables.items():
            count = connection.execute(select(func.count()).select_from(model)).scalar_one()
            if count:
                raise NotEmpty(
                    f"the store already holds {count} {key} rows; restore goes only into an "
                    "empty store (create a new database, run `fleetplane db upgrade`, restore)"
                )
        for key, model in tables.items():
            rows = backup[key]
            if rows:
                connection.execute(insert(model), rows)
        version = int(backup["resourceVersion"])
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
                after_digest=digest(backup),
                details={key: len(backup[key]) for key in tables},
            ),
        )
    return {key: len(backup[key]) for key in tables}


def _check_format(backup: Any) -> None:
    if not isinstance(backup, dict) or backup.get("format") != FORMAT:
        raise ValidationError(f"not a fleetplane backup (expected format {FORMAT!r})")
    missing = [key for key in (*_tables(), "resourceVersion") if key not in backup]
    if missing:
        raise ValidationError(f"the backup lacks {', '.join(missing)}; it is truncated or edited")
    revision = backup.get("schemaRevision")
    if revision is not None and revision != migrate.head_revision():
        raise ValidationError(
            f"the backup was taken at schema revision {revision}, this fleetplane has "
            f"{migrate.head_revision()}; restore it with the fleetplane version that took it, "
            "then upgrade"
        )


def _counter(connection: Connection, name: str) -> int:
    value = connection.execute(select(COUNTERS.c.value).where(COUNTERS.c.name == name)).scalar()
    return int(value or 0)
