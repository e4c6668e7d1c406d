"""Alembic environment: always run with a connection handed in by ``migrate.py``."""

from __future__ import annotations

from alembic import context

from fleetplane.control.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things in place; batch mode copies the table.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
