"""The agent's HTTP client keep-alive, its log levels, and the replica spec hash."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterator

import pytest

from fleetplane.agent.agent import KEEPALIVE_EXPIRY, control_plane_client
from fleetplane.agent.command import configure_logging
from fleetplane.agent.runtimes.base import spec_hash
from fleetplane.control.agent_api.serving import AGENT_KEEP_ALIVE_SECONDS
from fleetplane.model.desired_state import DesiredWorkload

WORKLOAD = {
    "workload": "digits", "workloadClass": "inference", "pool": "cpu", "profile": "cpu",
    "replicas": 2, "resources": {"cpu": 1, "memory": "1Gi"}, "env": {"A": "1"},
}


def test_control_plane_connections_outlive_heartbeat_intervals() -> None:
    client = control_plane_client(ssl.create_default_context())
    try:
        pool = client._transport._pool  # type: ignore[attr-defined]
        # Default agent heartbeat 5 s, telemetry 10 s; the server closes idle ones at 75 s.
        assert pool._keepalive_expiry == KEEPALIVE_EXPIRY
        assert 10.0 * 3 <= KEEPALIVE_EXPIRY < AGENT_KEEP_ALIVE_SECONDS
    finally:
        asyncio.run(client.aclose())


@pytest.fixture
def restore_loggers() -> Iterator[None]:
    names = ("httpx", "httpcore", "")
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


@pytest.mark.usefixtures("restore_loggers")
def test_http_request_lines_are_quiet_unless_debugging(caplog: pytest.LogCaptureFixture) -> None:
    configure_logging("info")
    with caplog.at_level(logging.INFO):
        logging.getLogger("httpx").info("HTTP Request: PUT https://cp/status \"HTTP/1.1 200 OK\"")
        logging.getLogger("httpcore.connection").info("connect_tcp.started")
        logging.getLogger("httpx").warning("a warning still shows")
        logging.getLogger("fleetplane.agent").info("applied revision 3")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["a warning still shows", "applied revision 3"]
    caplog.clear()
    configure_logging("debug")
    logging.getLogger("httpx").info("HTTP Request: GET https://cp/watch")
    assert [r.getMessage() for r in caplog.records] == ["HTTP Request: GET https://cp/watch"]


def test_spec_hash_ignores_optional_fields_left_unset() -> None:
    class FutureWorkload(DesiredWorkload):
        """The model as a newer release might have it: one more optional field."""

        warm_pool: str | None = None

    today = DesiredWorkload.model_validate(WORKLOAD)
    tomorrow = FutureWorkload.model_validate(WORKLOAD)
    assert spec_hash(tomorrow, "cpu") == spec_hash(today, "cpu")
    assert spec_hash(FutureWorkload.model_validate({**WORKLOAD, "warmPool": "x"}), "cpu") != (
        spec_hash(today, "cpu"))


def test_spec_hash_follows_what_the_process_depends_on() -> None:
    base = DesiredWorkload.model_validate(WORKLOAD)
    same = spec_hash(base, "cpu")
    assert spec_hash(DesiredWorkload.model_validate({**WORKLOAD, "replicas": 5}), "cpu") == same
    assert spec_hash(DesiredWorkload.model_validate({**WORKLOAD, "env": {"A": "2"}}),
                     "cpu") != same
    assert spec_hash(DesiredWorkload.model_validate(
        {**WORKLOAD, "resources": {"cpu": 1, "memory": "2Gi"}}), "cpu") != same
    assert spec_hash(base, "spare") != same
    assert spec_hash(DesiredWorkload.model_validate(
        {**WORKLOAD, "batch": {"timeLimit": "1h"}}), "cpu") != same
