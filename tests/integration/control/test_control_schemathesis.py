"""Property-based fuzzing of the API from its own OpenAPI document: no input earns a 5xx.

Bounded to a dozen examples per operation (a couple of hundred requests)
and derandomised, so CI runs the same cases every time in well under a
minute; run it with a larger EXAMPLES_PER_OPERATION to explore further.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from control_harness import create_database, create_schema, drop_database, require_postgres
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings

from fleetplane.control.app import create_app
from fleetplane.control.settings import Settings
from fleetplane.security.keyring import generate_key_text, parse_keyring

EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[FastAPI, str]]:
    tokens: list[str] = []
    database = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'store.db'}"
    else:
        require_postgres()
        database = create_database()
        url = create_schema(database)
    app = create_app(
        Settings(
            database_url=url,
            secrets_keyring=parse_keyring(generate_key_text()),
        ),
        announce=tokens.append,
    )
    with TestClient(app):
        yield app, tokens[0]
    if database is not None:
        drop_database(database)


@pytest.fixture(scope="module")
def api_schema(served: tuple[FastAPI, str]) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", served[0])


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_makes_the_server_fail(case: Any, served: tuple[FastAPI, str]) -> None:
    _, token = served
    if case.query and str(case.query.get("watch", "")).lower() in ("true", "1", "yes", "on"):
        # A watch streams until it times out; end it at once so the call returns.
        case.query["timeoutSeconds"] = 0
    response = case.call(headers={"Authorization": f"Bearer {token}"})
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
