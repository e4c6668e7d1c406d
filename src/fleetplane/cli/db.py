"""``fleetplane db upgrade``, ``backup``, ``restore``: work on the store directly."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from fleetplane.cli.main import app
from fleetplane.cli.output import stderr, stdout, user_errors
from fleetplane.control.settings import DEFAULT_DATABASE
from fleetplane.errors import ValidationError

DATABASE_ENV = "FLEETPLANE_DATABASE"
DATABASE_OPTION = typer.Option(
    DEFAULT_DATABASE, "--database", envvar=DATABASE_ENV, help="The store's database URL."
)

db_app = typer.Typer(help="Manage the control plane's database.", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
@user_errors
def upgrade(database: str = DATABASE_OPTION) -> None:
    """Create or migrate the schema to this fleetplane's version."""
    from fleetplane.control.store import migrate
    from fleetplane.control.store.database import create_store_engine

    engine = create_store_engine(database)
    try:
        before = migrate.upgrade(engine)
        after = migrate.current_revision(engine)
    finally:
        engine.dispose()
    if before == after:
        stdout.print(f"schema already at revision {after}", highlight=False)
    else:
        stdout.print(f"schema upgraded from {before or 'empty'} to {after}", highlight=False)


@app.command()
@user_errors
def backup(
    out: Annotated[Path, typer.Option("--out", help="File to write the snapshot to.")],
    database: str = DATABASE_OPTION,
) -> None:
    """Write a consistent snapshot of the whole store: resources, tokens, audit, artifacts."""
    from fleetplane.control.store import backup as snapshots
    from fleetplane.control.store.database import create_store_engine

    out.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and renamed: a failed backup never leaves a truncated FILE behind.
    partial = out.with_name(out.name + ".partial")
    engine = create_store_engine(database)
    try:
        # Token hashes and sealed secrets are not plain credentials, but still private.
        descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            taken = snapshots.write_snapshot(engine, handle)
        os.replace(partial, out)
    finally:
        engine.dispose()
        partial.unlink(missing_ok=True)
    counts = taken["counts"]
    artifacts, blobs = counts.get("artifacts", 0), counts.get("artifactBlobs", 0)
    stderr.print(
        f"backup of version {taken['resourceVersion']}: {counts['resources']} resources, "
        f"{counts['tokens']} tokens, {counts['audit']} audit records, "
        f"{artifacts} artifacts ({blobs} blobs) → {out}",
        highlight=False,
        markup=False,
    )


@app.command()
@user_errors
def restore(
    file: Annotated[Path, typer.Argument(help="A file written by `fleetplane backup`.")],
    database: str = DATABASE_OPTION,
) -> None:
    """Load a backup into an empty store (creating the schema if needed)."""
    from fleetplane.control.store import backup as snapshots
    from fleetplane.control.store import migrate
    from fleetplane.control.store.database import create_store_engine

    engine = create_store_engine(database)
    try:
        migrate.upgrade(engine)
        with file.open(encoding="utf-8") as handle:
            restored = snapshots.restore(
                engine, handle, actor=f"cli:{os.environ.get('USER', 'unknown')}",
                origin=str(file),
            )
    except (OSError, UnicodeDecodeError) as error:
        raise ValidationError(f"{file}: cannot read the backup: {error}") from None
    finally:
        engine.dispose()
    counts = restored["counts"]
    stdout.print(
        f"restored {counts['resources']} resources, {counts['tokens']} tokens, "
        f"{counts['audit']} audit records, {counts.get('artifacts', 0)} artifacts at version "
        f"{restored['resourceVersion']}",
        highlight=False,
        markup=False,
    )
