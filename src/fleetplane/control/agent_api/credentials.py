"""Bootstrap tokens and renewal credentials in the store: hashes only, consumed atomically."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, insert, select, update

from fleetplane.control.controllers.tables import BootstrapTokenRow, RenewalCredentialRow
from fleetplane.control.store.audit import AuditEntry
from fleetplane.control.store.database import read_transaction
from fleetplane.control.store.repository import Store
from fleetplane.security.bootstrap import BootstrapTokenRecord, already_used
from fleetplane.security.renewal import RenewalCredentialRecord


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment is not None else None


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text is not None else None


def save_bootstrap_token(store: Store, record: BootstrapTokenRecord, actor: str) -> None:
    def write(connection: Connection) -> None:
        connection.execute(
            insert(BootstrapTokenRow).values(
                token_id=record.token_id,
                site=record.site,
                secret_hash=record.secret_hash,
                created_at=_iso(record.created_at),
                expires_at=_iso(record.expires_at),
            )
        )
        store.audit.append(
            connection,
            AuditEntry(actor=actor, action="bootstrap-token.create", kind="BootstrapToken",
                       name=record.token_id, details={"site": record.site}),
        )

    store.run_write(write)


def find_bootstrap_token(store: Store, token_id: str) -> BootstrapTokenRecord | None:
    with read_transaction(store.engine) as connection:
        row = connection.execute(
            select(BootstrapTokenRow).where(BootstrapTokenRow.token_id == token_id)
        ).first()
    if row is None:
        return None
    return BootstrapTokenRecord(
        token_id=row.token_id,
        secret_hash=row.secret_hash,
        created_at=_time(row.created_at) or datetime.now(UTC),
        expires_at=_time(row.expires_at) or datetime.now(UTC),
        revoked_at=_time(row.revoked_at),
        site=row.site,
        used_at=_time(row.used_at),
        used_by=row.used_by,
    )


def consume_bootstrap_token(
    connection: Connection, record: BootstrapTokenRecord, agent_id: str, now: datetime
) -> None:
    """Spend the token in the caller's transaction; a concurrent enrolment that won raises."""
    result = connection.execute(
        update(BootstrapTokenRow)
        .where(
            BootstrapTokenRow.token_id == record.token_id,
            BootstrapTokenRow.used_at.is_(None),
            BootstrapTokenRow.revoked_at.is_(None),
        )
        .values(used_at=_iso(now), used_by=agent_id)
    )
    if result.rowcount != 1:
        raise already_used(record)


def insert_renewal_credential(connection: Connection, record: RenewalCredentialRecord) -> None:
    """Store the new credential and revoke every earlier one of the same agent."""
    connection.execute(
        update(RenewalCredentialRow)
        .where(
            RenewalCredentialRow.site == record.site,
            RenewalCredentialRow.agent_id == record.agent_id,
            RenewalCredentialRow.revoked_at.is_(None),
        )
        .values(revoked_at=_iso(record.created_at))
    )
    connection.execute(
        insert(RenewalCredentialRow).values(
            credential_id=record.token_id,
            site=record.site,
            agent_id=record.agent_id,
            secret_hash=record.secret_hash,
            created_at=_iso(record.created_at),
            expires_at=_iso(record.expires_at),
        )
    )


def find_renewal_credential(store: Store, credential_id: str) -> RenewalCredentialRecord | None:
    with read_transaction(store.engine) as connection:
        row = connection.execute(
            select(RenewalCredentialRow).where(
                RenewalCredentialRow.credential_id == credential_id
            )
        ).first()
    if row is None:
        return None
    return RenewalCredentialRecord(
        token_id=row.credential_id,
        secret_hash=row.secret_hash,
        created_at=_time(row.created_at) or datetime.now(UTC),
        expires_at=_time(row.expires_at) or datetime.now(UTC),
        revoked_at=_time(row.revoked_at),
        site=row.site,
        agent_id=row.agent_id,
    )
