"""Label-selector watches: previous labels on events, and an index per kind.

A watch with a label selector must tell a watcher when an object stops
matching (it sees DELETED) or starts matching (ADDED); that needs the labels
before the change. Events written before this revision have none and are
treated as unchanged labels. The per-kind index serves watches of one kind
without scanning every event.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

Document = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("events") as batch:
        batch.add_column(sa.Column("prev_labels", Document, nullable=True))
    op.create_index("ix_events_kind_resource_version", "events", ["kind", "resource_version"])


def downgrade() -> None:
    op.drop_index("ix_events_kind_resource_version", table_name="events")
    with op.batch_alter_table("events") as batch:
        batch.drop_column("prev_labels")
