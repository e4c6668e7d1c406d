"""Fixtures for controller and agent-port tests: a store on SQLite and on PostgreSQL."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "control"))

from control_harness import (
    create_database,
    create_schema,
    drop_database,
    require_postgres,
)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    require_postgres()
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    database: str = request.getfixturevalue("postgres_database")
    return create_schema(database)
