"""Databases and server processes for control-plane tests (importable by other test packages).

PostgreSQL: 127.0.0.1:5432, trust authentication, database ``test``. Each
test session creates its own database; each store gets its own schema in
it (cheap, and tests cannot see each other's rows). When PostgreSQL is not
reachable the PostgreSQL variants are skipped — or fail when ``CI=true``.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

PG_ADMIN_URL = os.environ.get(
    "FLEETPLANE_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
READY_TIMEOUT = 60.0


def postgres_unavailable_reason() -> str | None:
    import psycopg

    url = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(url, connect_timeout=3):
            return None
    except psycopg.Error as error:
        return f"PostgreSQL at {PG_ADMIN_URL} is not reachable: {error}".strip()


def require_postgres() -> None:
    reason = postgres_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: PostgreSQL is required)")
    pytest.skip(reason)


def create_database() -> str:
    """A fresh database for this session; its URL (same server and user)."""
    import psycopg

    name = f"fp_test_{os.getpid()}_{secrets.token_hex(3)}"
    url = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(database_url: str) -> None:
    import psycopg

    name = database_url.rsplit("/", 1)[1]
    url = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def create_schema(database_url: str) -> str:
    """A fresh schema in ``database_url``; the URL that uses it as search path."""
    import psycopg

    schema = f"s_{secrets.token_hex(5)}"
    with psycopg.connect(
        database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True
    ) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    return f"{database_url}?options=-csearch_path%3D{schema}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerProcess:
    url: str
    token: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def start_server(
    database_url: str, workdir: Path, *extra: str, env: dict[str, str] | None = None
) -> ServerProcess:
    """``fleetplane serve`` on a free loopback port; returns once /readyz answers 200."""
    port = free_port()
    token_file = workdir / f"admin-{port}.token"
    log = workdir / f"serve-{port}.log"
    command = [
        sys.executable,
        "-c",
        "from fleetplane.cli.main import run; run()",
        "serve",
        "--database",
        database_url,
        "--listen",
        f"127.0.0.1:{port}",
        "--admin-token-file",
        str(token_file),
        "--log-level",
        "warning",
        *extra,
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd=workdir,
        )
    scheme = "https" if "--tls-cert" in extra else "http"
    url = f"{scheme}://127.0.0.1:{port}"
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"fleetplane serve exited early:\n{log.read_text()}")
        try:
            # Readiness only: the certificate is checked by the tests themselves.
            if httpx.get(f"{url}/readyz", timeout=1.0, verify=False).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.1)  # polling for readiness of a separate process
    else:
        process.kill()
        raise RuntimeError(f"fleetplane serve not ready after {READY_TIMEOUT}s:\n{log.read_text()}")
    token = token_file.read_text().strip() if token_file.exists() else ""
    return ServerProcess(url, token, process, log)


@contextmanager
def running_server(
    database_url: str, workdir: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[ServerProcess]:
    server = start_server(database_url, workdir, *extra, env=env)
    try:
        yield server
    finally:
        server.stop()
