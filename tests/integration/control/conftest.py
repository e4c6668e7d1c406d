"""Fixtures: a store on SQLite and on PostgreSQL, in-process apps, tokens per role."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from control_harness import create_database, create_schema, drop_database, require_postgres
from fastapi.testclient import TestClient

from fleetplane.control.app import create_app
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


class Api:
    """An in-process app with its admin token and helpers to mint tokens per role."""

    def __init__(self, client: TestClient, admin_token: str) -> None:
        self.client = client
        self.admin_token = admin_token
        self._tokens: dict[str, str] = {"admin": admin_token}

    def headers(self, role: str = "admin") -> dict[str, str]:
        if role not in self._tokens:
            created = self.client.post(
                "/api/v1/tokens",
                json={"name": f"{role}-user", "role": role, "ttl": "1h"},
                headers=self.headers("admin"),
            )
            assert created.status_code == 201, created.text
            self._tokens[role] = created.json()["token"]
        return {"Authorization": f"Bearer {self._tokens[role]}"}

    def request(self, method: str, path: str, role: str = "admin", **kwargs: Any) -> Any:
        headers = {**self.headers(role), **kwargs.pop("headers", {})}
        return self.client.request(method, path, headers=headers, **kwargs)


def make_api(settings: Settings) -> Iterator[Api]:
    tokens: list[str] = []
    app = create_app(settings, announce=tokens.append)
    with TestClient(app) as client:
        yield Api(client, tokens[0])


@pytest.fixture
def api(database_url: str, secrets_keyring: Keyring) -> Iterator[Api]:
    yield from make_api(Settings(database_url=database_url, secrets_keyring=secrets_keyring))


@pytest.fixture
def sqlite_api(sqlite_url: str, secrets_keyring: Keyring) -> Iterator[Api]:
    yield from make_api(Settings(database_url=sqlite_url, secrets_keyring=secrets_keyring))
