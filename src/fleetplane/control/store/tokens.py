"""API token records in the store: only hashes, with every change audited."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from fleetplane.control.store.audit import AuditEntry
from fleetplane.control.store.database import read_transaction
from fleetplane.control.store.errors import NotFound
from fleetplane.control.store.repository import Store
from fleetplane.control.store.schema import TOKENS
from fleetplane.security.clock import as_utc
from fleetplane.security.rbac import Role
from fleetplane.security.tokens import TokenRecord


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return as_utc(moment).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse(text: str | None) -> datetime | None:
    if text is None:
        return None
    return as_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _record(row: Any) -> TokenRecord:
    expires = _parse(row.expires_at)
    created = _parse(row.created_at)
    assert expires is not None and created is not None, "written by save_token"
    return TokenRecord(
        token_id=row.id,
        secret_hash=row.secret_hash,
        created_at=created,
        expires_at=expires,
        revoked_at=_parse(row.revoked_at),
        name=row.name,
        role=Role(row.role),
    )


def save_token(store: Store, record: TokenRecord, *, actor: str) -> None:
    store.run_write(lambda connection: insert_token(connection, store, record, actor=actor))


def insert_token(connection: Connection, store: Store, record: TokenRecord, *, actor: str) -> None:
    """Insert a token record and its audit entry in the caller's write transaction."""
    connection.execute(
        insert(TOKENS).values(
            id=record.token_id,
            name=record.name,
            role=record.role.value,
            secret_hash=record.secret_hash,
            created_at=_iso(record.created_at),
            expires_at=_iso(record.expires_at),
            revoked_at=None,
            created_by=actor,
        )
    )
    store.audit.append(
        connection,
        AuditEntry(
            actor=actor,
            action="token.create",
            kind="ApiToken",
            name=record.token_id,
            details={
                "name": record.name,
                "role": record.role.value,
                "expiresAt": _iso(record.expires_at),
            },
        ),
    )


def find_token(store: Store, token_id: str) -> TokenRecord | None:
    with read_transaction(store.engine) as connection:
        row = connection.execute(select(TOKENS).where(TOKENS.c.id == token_id)).first()
    return _record(row) if row is not None else None


def list_tokens(store: Store) -> list[tuple[TokenRecord, str]]:
    """Every token record with who created it, oldest first."""
    with read_transaction(store.engine) as connection:
        rows = connection.execute(select(TOKENS).order_by(TOKENS.c.created_at)).all()
    return [(_record(row), row.created_by) for row in rows]


def count_tokens(connection: Connection) -> int:
    return int(connection.execute(select(func.count()).select_from(TOKENS)).scalar_one())


def revoke_token(store: Store, token_id: str, *, actor: str, now: datetime) -> TokenRecord:
    def write(connection: Connection) -> TokenRecord:
        row = connection.execute(select(TOKENS).where(TOKENS.c.id == token_id)).first()
        if row is None:
            raise NotFound("ApiToken", token_id)
        record = _record(row)
        revoked = record.revoke(now=now)
        if record.revoked_at is None:
            connection.execute(
                update(TOKENS)
                .where(TOKENS.c.id == token_id)
                .values(revoked_at=_iso(revoked.revoked_at))
            )
            store.audit.append(
                connection,
                AuditEntry(
                    actor=actor,
                    action="token.revoke",
                    kind="ApiToken",
                    name=token_id,
                    details={"name": record.name, "role": record.role.value},
                ),
            )
        return revoked

    result: TokenRecord = store.run_write(write)
    return result
