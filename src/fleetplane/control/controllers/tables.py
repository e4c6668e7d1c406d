"""Tables of the controllers and the agent port: leases, site revisions, agent credentials.

They live in their own metadata (they hold coordination and history, not
resources) and are created by Alembic revision 0003 like every other table
of the store. Site revisions and agent credentials are part of backups; the
lease is not.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Engine, MetaData, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fleetplane.control.store.database import write_transaction

Document = JSON().with_variant(JSONB(), "postgresql")


class ControlBase(DeclarativeBase):
    metadata = MetaData()


class LeaseRow(ControlBase):
    """Who runs the controllers, until when (seconds since the epoch, the holder's clock)."""

    __tablename__ = "fleetplane_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(253))
    expires_at: Mapped[float] = mapped_column()
    # Increases on every change of holder: lets a holder tell "renewed" from "lost and regained".
    epoch: Mapped[int] = mapped_column(BigInteger)


class SiteRevisionRow(ControlBase):
    """One revision of one site's desired state; the last N per site are kept."""

    __tablename__ = "fleetplane_site_revisions"

    site: Mapped[str] = mapped_column(String(253), primary_key=True)
    revision: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    # The global resource version of the SiteDesiredState write: orders revisions across sites.
    resource_version: Mapped[int] = mapped_column(BigInteger, index=True)
    document: Mapped[dict[str, Any]] = mapped_column(Document)


class BootstrapTokenRow(ControlBase):
    __tablename__ = "fleetplane_bootstrap_tokens"

    token_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(253))
    secret_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[str] = mapped_column(String(40))
    used_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    used_by: Mapped[str | None] = mapped_column(String(253), nullable=True)
    revoked_at: Mapped[str | None] = mapped_column(String(40), nullable=True)


class RenewalCredentialRow(ControlBase):
    __tablename__ = "fleetplane_renewal_credentials"

    credential_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    site: Mapped[str] = mapped_column(String(253))
    agent_id: Mapped[str] = mapped_column(String(253))
    secret_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[str] = mapped_column(String(40))
    revoked_at: Mapped[str | None] = mapped_column(String(40), nullable=True)


def ensure_tables(engine: Engine) -> None:
    """Create the tables above when missing (stores built without migrations, e.g. in tests).

    Safe to call from every replica at once: it runs under the store's write lock.
    """
    with write_transaction(engine) as connection:
        ControlBase.metadata.create_all(connection, checkfirst=True)
