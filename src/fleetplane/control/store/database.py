"""Engines and transactions with the guarantees the store relies on.

Two properties make the global resource version safe for watches:

* every write transaction takes the write lock *first* (SQLite ``BEGIN
  IMMEDIATE``; PostgreSQL ``SELECT … FOR UPDATE`` on the version counter
  row), so writers are serialised and versions are handed out in commit
  order — a watcher that has seen version N can never later find a commit
  with a smaller version;
* reads that need one consistent view (list + its version, backups) run in
  one snapshot (SQLite read transaction in WAL mode; PostgreSQL
  ``REPEATABLE READ``).

pysqlite's own transaction handling is switched off (it would defer BEGIN to
the first write and break both properties) and BEGIN is emitted here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from fleetplane.control.store.schema import COUNTERS, RESOURCE_VERSION
from fleetplane.errors import ValidationError

_WRITE = "fleetplane_write"
SQLITE_BUSY_TIMEOUT_SECONDS = 30.0


def create_store_engine(url: str) -> Engine:
    """An engine for ``sqlite:///file`` or ``postgresql+psycopg://…`` with our settings."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ValidationError(
            f"--database {url!r} is not a database URL; use sqlite:///PATH or "
            "postgresql+psycopg://USER@HOST/DB"
        ) from None
    backend = parsed.get_backend_name()
    try:
        if backend == "sqlite":
            return _sqlite_engine(url, parsed.database)
        if backend == "postgresql":
            return _postgresql_engine(url)
    except NoSuchModuleError:
        pass
    raise ValidationError(
        f"--database {url!r}: unsupported database {parsed.drivername!r}; "
        "use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB"
    )


def _sqlite_engine(url: str, database: str | None) -> Engine:
    if not database or database == ":memory:":
        # Every pooled connection would get its own empty in-memory database.
        raise ValidationError("the SQLite store needs a file: sqlite:///PATH")
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_SECONDS},
        pool_size=8,
        max_overflow=16,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: a commit survives a process crash; only an OS crash
        # can lose the last transactions, never corrupt the file.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_SECONDS * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = "BEGIN IMMEDIATE" if connection.get_execution_options().get(_WRITE) else "BEGIN"
        connection.exec_driver_sql(mode)

    return engine


def _postgresql_engine(url: str) -> Engine:
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that holds the store's write lock from its first statement."""
    with engine.connect() as connection:
        connection.execution_options(**{_WRITE: True})
        with connection.begin():
            if not is_sqlite(engine):
                connection.execute(
                    select(COUNTERS.c.value)
                    .where(COUNTERS.c.name == RESOURCE_VERSION)
                    .with_for_update()
                )
            yield connection


@contextmanager
def read_transaction(engine: Engine, *, snapshot: bool = False) -> Iterator[Connection]:
    """A read-only transaction; ``snapshot`` makes every statement see the same state."""
    with engine.connect() as connection:
        if snapshot and not is_sqlite(engine):
            connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            yield connection


def ping(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))
