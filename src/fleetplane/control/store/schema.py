"""The store's tables as SQLAlchemy 2 declarative models.

Migrations in ``migrations/versions`` create exactly these tables; a test
compares the migrated schema with this metadata so the two cannot drift.

Timestamps are ISO-8601 strings, not DATETIME columns: SQLite and
PostgreSQL round-trip them differently, and the audit chain hashes the exact
text.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import JSON, BigInteger, Index, MetaData, String, Table, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
}

# JSONB on PostgreSQL (compact, comparable); JSON text elsewhere.
Document = JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ResourceRow(Base):
    """The current state of one resource, as written (human units kept)."""

    __tablename__ = "resources"

    kind: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(253), primary_key=True)
    uid: Mapped[str] = mapped_column(String(36))
    resource_version: Mapped[int] = mapped_column(BigInteger, index=True)
    generation: Mapped[int] = mapped_column(BigInteger)
    labels: Mapped[dict[str, str]] = mapped_column(Document)
    annotations: Mapped[dict[str, str]] = mapped_column(Document)
    spec: Mapped[dict[str, Any]] = mapped_column(Document)
    status: Mapped[dict[str, Any] | None] = mapped_column(Document, nullable=True)
    created_at: Mapped[str] = mapped_column(String(40))
    updated_at: Mapped[str] = mapped_column(String(40))


class EventRow(Base):
    """One change, keyed by the resource version it produced (the watch log)."""

    __tablename__ = "events"

    resource_version: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False
    )
    type: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(253))
    # The full document after the change (before it, for DELETED).
    object: Mapped[dict[str, Any]] = mapped_column(Document)
    # Labels before the change, so a label-selector watch can tell an object
    # that stopped matching (DELETED for that watcher) from one that never did.
    prev_labels: Mapped[dict[str, str] | None] = mapped_column(Document, nullable=True)
    created_at: Mapped[str] = mapped_column(String(40))

    __table_args__ = (Index("ix_events_kind_resource_version", "kind", "resource_version"),)


class CounterRow(Base):
    """Named counters; ``resourceVersion`` is the global version, locked by every write."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger)


class TokenRow(Base):
    """An API token: only the hash of its secret is kept."""

    __tablename__ = "api_tokens"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(253))
    role: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[str] = mapped_column(String(40))
    expires_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    revoked_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    created_by: Mapped[str] = mapped_column(String(253))


class AuditRow(Base):
    """One record of the hash-chained audit log (``fleetplane.security.audit.AuditRecord``).

    ``seq`` is assigned by the chain (previous + 1), not by the database, and
    ``details`` is kept as canonical JSON text: the hash covers its exact bytes.
    """

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    time: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(253))
    action: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(253))
    before_digest: Mapped[str | None] = mapped_column(String(100), nullable=True)
    after_digest: Mapped[str | None] = mapped_column(String(100), nullable=True)
    details: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(200))
    hash: Mapped[str] = mapped_column(String(200))


RESOURCE_VERSION = "resourceVersion"
# Events at or below this version were compacted away: older watches get 410.
COMPACTED_THROUGH = "compactedThrough"

# Core tables for statements: ORM-enabled inserts/updates cost several times
# more CPU per row than Core ones, and the store needs none of the ORM.
RESOURCES = cast(Table, ResourceRow.__table__)
EVENTS = cast(Table, EventRow.__table__)
COUNTERS = cast(Table, CounterRow.__table__)
TOKENS = cast(Table, TokenRow.__table__)
AUDIT = cast(Table, AuditRow.__table__)
