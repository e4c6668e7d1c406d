"""Artifacts: content-addressed blobs in chunks, uploads in progress, name+version records.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

Document = sa.JSON().with_variant(JSONB(), "postgresql")
DIGEST_INDEX = "ix_fleetplane_artifacts_digest"


def upgrade() -> None:
    op.create_table(
        "fleetplane_artifacts",
        sa.Column("name", sa.String(253), primary_key=True),
        sa.Column("version", sa.String(128), primary_key=True),
        sa.Column("digest", sa.String(71), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("files", Document, nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("created_by", sa.String(253), nullable=False),
    )
    op.create_index(DIGEST_INDEX, "fleetplane_artifacts", ["digest"])
    op.create_table(
        "fleetplane_artifact_blobs",
        sa.Column("digest", sa.String(71), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.String(40), nullable=False),
    )
    op.create_table(
        "fleetplane_artifact_uploads",
        sa.Column("upload_id", sa.String(32), primary_key=True),
        sa.Column("created_at", sa.String(40), nullable=False),
        sa.Column("created_by", sa.String(253), nullable=False),
    )
    op.create_table(
        "fleetplane_artifact_chunks",
        sa.Column("owner", sa.String(80), primary_key=True),
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("fleetplane_artifact_chunks")
    op.drop_table("fleetplane_artifact_uploads")
    op.drop_table("fleetplane_artifact_blobs")
    op.drop_index(DIGEST_INDEX, table_name="fleetplane_artifacts")
    op.drop_table("fleetplane_artifacts")
