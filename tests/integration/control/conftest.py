"""Fixtures: a store on SQLite and on PostgreSQL, in-process apps, tokens per role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from api_harness import Api, make_api
from control_harness import create_database, create_schema, drop_database, require_postgres

from fleetplane.control.settings import Settings
from fleetplane.security.keyring import Keyring, generate_key_text, parse_keyring


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    require_postgres()
    url = create_database()
    yield url
    drop_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store's URL, once per database (the whole suite runs on both)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    database: str = request.getfixturevalue("postgres_database")
    return create_schema(database)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'store.db'}"


@pytest.fixture(scope="session")
def secrets_keyring() -> Keyring:
    return parse_keyring(generate_key_text())


@pytest.fixture
def api(database_url: str, secrets_keyring: Keyring) -> Iterator[Api]:
    yield from make_api(Settings(database_url=database_url, secrets_keyring=secrets_keyring))


@pytest.fixture
def sqlite_api(sqlite_url: str, secrets_keyring: Keyring) -> Iterator[Api]:
    yield from make_api(Settings(database_url=sqlite_url, secrets_keyring=secrets_keyring))
