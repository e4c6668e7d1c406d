"""Tables of the controllers and the agent port: leader lease, site revisions, agent credentials.

Before this revision each server created them itself on first use
(``controllers.tables.ensure_tables``), so a store may already hold some or
all of them: only the missing ones are created, with the same columns.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

Document = sa.JSON().with_variant(JSONB(), "postgresql")


def _tables() -> dict[str, list[sa.Column[object]]]:
    return {
        "fleetplane_leases": [
            sa.Column("name", sa.String(64), primary_key=True),
            sa.Column("holder", sa.String(253), nullable=False),
            sa.Column("expires_at", sa.Double(), nullable=False),
            sa.Column("epoch", sa.BigInteger(), nullable=False),
        ],
        "fleetplane_site_revisions": [
            sa.Column("site", sa.String(253), primary_key=True),
            sa.Column("revision", sa.BigInteger(), primary_key=True, autoincrement=False),
            sa.Column("resource_version", sa.BigInteger(), nullable=False),
            sa.Column("document", Document, nullable=False),
        ],
        "fleetplane_bootstrap_tokens": [
            sa.Column("token_id", sa.String(64), primary_key=True),
            sa.Column("site", sa.String(253), nullable=False),
            sa.Column("secret_hash", sa.Text(), nullable=False),
            sa.Column("created_at", sa.String(40), nullable=False),
            sa.Column("expires_at", sa.String(40), nullable=False),
            sa.Column("used_at", sa.String(40), nullable=True),
            sa.Column("used_by", sa.String(253), nullable=True),
            sa.Column("revoked_at", sa.String(40), nullable=True),
        ],
        "fleetplane_renewal_credentials": [
            sa.Column("credential_id", sa.String(64), primary_key=True),
            sa.Column("site", sa.String(253), nullable=False),
            sa.Column("agent_id", sa.String(253), nullable=False),
            sa.Column("secret_hash", sa.Text(), nullable=False),
            sa.Column("created_at", sa.String(40), nullable=False),
            sa.Column("expires_at", sa.String(40), nullable=False),
            sa.Column("revoked_at", sa.String(40), nullable=True),
        ],
    }


REVISION_INDEX = "ix_fleetplane_site_revisions_resource_version"


def upgrade() -> None:
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, columns in _tables().items():
        if name not in existing:
            op.create_table(name, *columns)
    if "fleetplane_site_revisions" not in existing:
        op.create_index(REVISION_INDEX, "fleetplane_site_revisions", ["resource_version"])


def downgrade() -> None:
    op.drop_index(REVISION_INDEX, table_name="fleetplane_site_revisions")
    for name in reversed(list(_tables())):
        op.drop_table(name)
