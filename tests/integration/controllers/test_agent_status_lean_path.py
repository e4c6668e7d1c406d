"""The agent port's lean status-write path: it serves the ordinary write, the full app the rest.

Driven over the real agent ASGI app (``create_agent_app``) in-process; the
client certificate is put into the scope where ``fleetplane.control.mtls``
puts the TLS peer's. Every refusal must be the full app's own answer, and a
plain write must not reach the full app at all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from fastapi.testclient import TestClient
from fleet_docs import documents, site
from peer_scope import WithCertificate

from fleetplane import __version__
from fleetplane.control.agent_api import heartbeat, lean_status
from fleetplane.control.agent_api.app import create_agent_app
from fleetplane.control.agent_api.lean_status import LeanStatusWrite, status_site
from fleetplane.control.app import create_app
from fleetplane.control.controllers.tables import ensure_tables
from fleetplane.control.mtls import CLIENT_CERT_KEY, TLS_EXTENSION
from fleetplane.control.plane import ControlPlane
from fleetplane.control.ratelimit import RateLimiter
from fleetplane.control.settings import Limits, Settings
from fleetplane.security import CertificateAuthority, SpiffeId, build_csr, generate_private_key

V1 = "/apis/fleetplane/v1"
MAX_BODY = 2048
STATUS = {"status": {"agentVersion": __version__, "workloads": []}}


class Counting:
    """Stands between the lean path and the full app: counts what reaches the full app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.calls = 0

    def identify(self, der: bytes) -> Any:
        return self.app.identify(der)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.calls += 1
        await self.app(scope, receive, send)


@dataclass
class Port:
    people: TestClient
    agents: TestClient
    wrapper: WithCertificate
    lean: LeanStatusWrite
    full: Counting
    plane: ControlPlane
    ca: CertificateAuthority


def _der(ca: CertificateAuthority, site_name: str) -> bytes:
    key = generate_private_key()
    certificate = ca.issue_agent_certificate(
        build_csr(key, SpiffeId(ca.fleet, site_name, "a1")), site=site_name, agent_id="a1"
    )
    return certificate.public_bytes(Encoding.DER)


@pytest.fixture
def port(database_url: str) -> Iterator[Port]:
    settings = Settings(database_url=database_url, limits=Limits(max_body_bytes=MAX_BODY))
    plane = ControlPlane.open(settings)
    ensure_tables(plane.engine)
    tokens: list[str] = []
    human = create_app(settings, plane=plane, announce=tokens.append)
    ca = CertificateAuthority.create("acme")
    lean = create_agent_app(plane, ca)
    full = Counting(lean.app)
    lean.app = full  # type: ignore[assignment]
    wrapper = WithCertificate(lean)
    with TestClient(human) as people, TestClient(wrapper) as agents:
        people.headers["Authorization"] = f"Bearer {tokens[0]}"
        applied = people.post(f"{V1}/apply", content=documents(site("a"), site("b")),
                              headers={"Content-Type": "application/yaml"})
        assert applied.status_code == 200, applied.text
        wrapper.der = _der(ca, "a")
        yield Port(people, agents, wrapper, lean, full, plane, ca)


def _put(port: Port, body: bytes | dict[str, Any], site_name: str = "a") -> Any:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return port.agents.put(f"{V1}/sites/{site_name}/status", content=content,
                           headers={"Content-Type": "application/json"})


def _routed(port: Port, body: dict[str, Any], site_name: str = "a") -> Any:
    """The same write answered by the FastAPI route itself (the lean path taken out)."""
    port.wrapper.app = port.full.app
    try:
        return _put(port, body, site_name)
    finally:
        port.wrapper.app = port.lean


def test_a_plain_status_write_never_reaches_the_full_app(port: Port) -> None:
    answer = _put(port, STATUS)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert set(body) == {"site", "resourceVersion", "heartbeat"} and body["site"] == "a"
    assert (port.full.calls, port.lean.served, port.lean.handed_over) == (0, 1, 0)
    stored = port.people.get(f"{V1}/sites/a").json()
    assert stored["status"]["reachability"] == "Reachable"
    assert stored["status"]["heartbeat"] == body["heartbeat"]
    assert stored["metadata"]["resourceVersion"] == body["resourceVersion"]
    changed = _put(port, {"status": {**STATUS["status"], "appliedRevision": 1}})
    assert int(changed.json()["resourceVersion"]) > int(body["resourceVersion"])
    assert port.full.calls == 0
    # Other requests still go to the full app.
    assert port.agents.get(f"{V1}/sitedesiredstates/b").status_code == 403
    assert port.full.calls == 1


def test_the_lean_answer_has_the_routes_shape(port: Port) -> None:
    lean = _put(port, STATUS)
    routed = _routed(port, STATUS)
    assert routed.status_code == lean.status_code == 200
    assert set(routed.json()) == set(lean.json())
    assert routed.headers["content-type"] == lean.headers["content-type"]
    # Both go to the same batcher: the route's write moved only the heartbeat.
    assert routed.json()["resourceVersion"] == lean.json()["resourceVersion"]
    assert routed.json()["heartbeat"] >= lean.json()["heartbeat"]


def test_without_or_with_a_foreign_certificate_the_answer_is_401(port: Port) -> None:
    port.wrapper.der = None
    answer = _put(port, STATUS)
    assert answer.status_code == 401 and "present the agent's client certificate" in answer.text
    port.wrapper.der = _der(CertificateAuthority.create("acme"), "a")
    refused = _put(port, STATUS)
    assert refused.status_code == 401 and "client certificate refused" in refused.text
    assert port.lean.served == 0 and port.full.calls == 2


def test_another_sites_status_is_403_with_rbacs_message(port: Port) -> None:
    answer = _put(port, STATUS, site_name="b")
    assert answer.status_code == 403, answer.text
    assert answer.json()["message"].startswith(
        "forbidden for spiffe://acme/site/a/agent/a1 (agent): "
    )
    assert answer.json()["details"] == {"kind": "Site", "name": "b", "verb": "update"}
    assert port.lean.served == 0 and port.full.calls == 1
    assert port.people.get(f"{V1}/sites/b").json().get("status") in (None, {})


def test_a_body_over_the_limit_is_413(port: Port) -> None:
    big = {"status": {**STATUS["status"], "hardware": {"note": "x" * MAX_BODY}}}
    answer = _put(port, big)
    assert answer.status_code == 413 and "larger than this server accepts" in answer.text
    assert port.lean.served == 0 and port.full.calls == 1


def test_a_body_growing_over_the_limit_while_read_is_413(port: Port) -> None:
    # Content-Length claims little; the chunks say otherwise. The lean path stops
    # reading past the limit and the full app, replayed what was read, answers.
    messages = [
        {"type": "http.request", "body": b"{" + b" " * MAX_BODY, "more_body": True},
        {"type": "http.request", "body": b"}", "more_body": False},
    ]
    code, body = asyncio.run(_call(port, "/apis/fleetplane/v1/sites/a/status", b"10", messages))
    assert code == 413 and "larger than this server accepts" in body["message"]
    assert port.lean.served == 0 and port.full.calls == 1


def test_replayed_chunks_reach_the_route_whole(port: Port) -> None:
    # Handed over after reading (an old agent): the route sees the whole body, in its chunks.
    text = json.dumps({"status": {"agentVersion": "99.0.0"}}).encode()
    messages = [
        {"type": "http.request", "body": text[:7], "more_body": True},
        {"type": "http.request", "body": text[7:], "more_body": False},
    ]
    code, body = asyncio.run(
        _call(port, "/apis/fleetplane/v1/sites/a/status", str(len(text)).encode(), messages)
    )
    assert code == 426 and body["reason"] == "UpgradeRequired"
    assert port.lean.handed_over == 1 and port.full.calls == 1


def test_bad_json_and_bad_shapes_are_the_routes_400_and_422(port: Port) -> None:
    not_json = _put(port, b"{nope")
    assert not_json.status_code == 400
    assert not_json.json()["message"].startswith("the request body is not valid JSON: ")
    for shape in ({"status": 3}, [1], {"nostatus": {}}):
        answer = _put(port, shape)  # type: ignore[arg-type]
        assert answer.status_code == 422, (shape, answer.text)
        assert answer.json()["message"] == 'the body must be {"status": {...}} (a Site status)'
    invalid = _put(port, {"status": {"agentVersion": __version__, "workloads": 5}})
    assert invalid.status_code == 422 and invalid.json()["message"].startswith("status: ")
    bad_version = _put(port, {"status": {"agentVersion": "latest"}})
    assert bad_version.status_code == 422 and "MAJOR.MINOR" in bad_version.text
    assert port.lean.served == 0 and port.full.calls == 6


def test_an_old_agent_gets_426(port: Port) -> None:
    answer = _put(port, {"status": {"agentVersion": "99.0.0", "workloads": []}})
    assert answer.status_code == 426 and "upgrade the agent" in answer.text
    assert answer.json()["reason"] == "UpgradeRequired"
    assert port.lean.served == 0


def test_a_site_that_does_not_exist_is_404(port: Port) -> None:
    port.wrapper.der = _der(port.ca, "ghost")
    answer = _put(port, STATUS, site_name="ghost")
    assert answer.status_code == 404
    assert answer.json() == {
        "apiVersion": "v1", "kind": "Status", "status": "Failure",
        "message": "site 'ghost' not found", "reason": "NotFound", "code": 404,
    }
    assert port.lean.served == 1 and port.full.calls == 0
    # The route answers the same.
    routed = _routed(port, STATUS, site_name="ghost")
    assert routed.status_code == 404 and routed.json() == answer.json()


def test_an_unchanged_body_is_validated_once(
    port: Port, monkeypatch: pytest.MonkeyPatch
) -> None:
    validated: list[Any] = []
    real = lean_status.SiteStatus

    class Counted:
        @staticmethod
        def model_validate(value: Any) -> Any:
            validated.append(value)
            return real.model_validate(value)

    monkeypatch.setattr(lean_status, "SiteStatus", Counted)
    for _ in range(3):
        assert _put(port, STATUS).status_code == 200
    assert len(validated) == 1
    changed = {"status": {**STATUS["status"], "appliedRevision": 2}}
    assert _put(port, changed).status_code == 200
    assert len(validated) == 2
    # The version check is not remembered: a server upgraded in place refuses the same body.
    monkeypatch.setattr(heartbeat, "__version__", "99.0.0")
    assert _put(port, changed).status_code == 426
    monkeypatch.setattr(heartbeat, "__version__", __version__)
    # An invalid status after a valid one is still refused, and never remembered.
    invalid = {"status": {**STATUS["status"], "workloads": 5}}
    assert _put(port, invalid).status_code == 422
    assert _put(port, invalid).status_code == 422
    assert port.full.calls == 3


# ------------------------------------------------------------ heartbeat-only writes


def _site_events(port: Port, after: int) -> list[Any]:
    return [e for e in port.plane.store.events_since(after, kind="Site").events if e.name == "a"]


def test_a_heartbeat_only_write_takes_no_version_and_no_event(port: Port) -> None:
    first = _put(port, STATUS).json()
    version = int(first["resourceVersion"])
    second = _put(port, STATUS).json()
    assert int(second["resourceVersion"]) == version
    assert second["heartbeat"] >= first["heartbeat"]
    assert _site_events(port, version) == []
    assert port.lean.batcher.touches == 1
    stored = port.people.get(f"{V1}/sites/a").json()
    assert stored["status"]["heartbeat"] == second["heartbeat"]
    assert stored["status"]["reachability"] == "Reachable"
    assert stored["metadata"]["resourceVersion"] == str(version)
    # A status that changed in more than its heartbeat is an ordinary write, with its event.
    changed = _put(port, {"status": {**STATUS["status"], "appliedRevision": 3}}).json()
    assert int(changed["resourceVersion"]) > version
    events = _site_events(port, version)
    assert [e.object["status"]["appliedRevision"] for e in events] == [3]
    assert port.lean.batcher.touches == 1


def test_a_site_written_by_someone_else_meanwhile_gets_an_ordinary_write(port: Port) -> None:
    from fleetplane.control.controllers.transactions import write_statuses

    def mark(state: str) -> Any:
        return lambda status: {**(status or {}), "reachability": state}

    _put(port, STATUS)
    write_statuses(port.plane.store, [("Site", "a", mark("Unreachable"))])
    marked = int(port.people.get(f"{V1}/sites/a").json()["metadata"]["resourceVersion"])
    back = _put(port, STATUS).json()
    assert int(back["resourceVersion"]) > marked
    assert port.people.get(f"{V1}/sites/a").json()["status"]["reachability"] == "Reachable"
    assert port.lean.batcher.touches == 0
    # Lost stays Lost, whether the write is ordinary or a touch.
    write_statuses(port.plane.store, [("Site", "a", mark("Lost"))])
    ordinary = _put(port, STATUS).json()
    touched = _put(port, STATUS).json()
    assert touched["resourceVersion"] == ordinary["resourceVersion"]
    assert port.lean.batcher.touches == 1
    stored = port.people.get(f"{V1}/sites/a").json()["status"]
    assert (stored["reachability"], stored["heartbeat"]) == ("Lost", touched["heartbeat"])


def test_a_deleted_site_is_404_even_when_its_last_write_is_remembered(port: Port) -> None:
    assert _put(port, STATUS).status_code == 200
    deleted = port.people.delete(f"{V1}/sites/a")
    assert deleted.status_code in (200, 202), deleted.text
    answer = _put(port, STATUS)
    assert answer.status_code == 404 and answer.json()["message"] == "site 'a' not found"


def test_touch_statuses_writes_only_where_the_version_still_holds(port: Port) -> None:
    from fleetplane.control.store.heartbeats import touch_statuses

    a = int(_put(port, STATUS).json()["resourceVersion"])
    port.wrapper.der = _der(port.ca, "b")
    b = int(_put(port, STATUS, site_name="b").json()["resourceVersion"])
    written, _ = touch_statuses(port.plane.store, [
        ("Site", "a", a, {"heartbeat": "2030-01-01T00:00:00Z"}),
        ("Site", "b", b - 1, {"heartbeat": "2030-01-01T00:00:00Z"}),
        ("Site", "ghost", 1, {"heartbeat": "2030-01-01T00:00:00Z"}),
    ])
    assert written == [True, False, False]
    future = {"heartbeat": "2030-01-01T00:00:00Z"}
    assert port.people.get(f"{V1}/sites/a").json()["status"] == future
    assert port.people.get(f"{V1}/sites/b").json()["status"]["heartbeat"] != future["heartbeat"]
    assert port.plane.store.current_version() == b


def test_only_the_status_put_is_intercepted() -> None:
    def scope(method: str, path: str, root_path: str = "") -> dict[str, Any]:
        return {"type": "http", "method": method, "path": path, "root_path": root_path}

    assert status_site(scope("PUT", f"{V1}/sites/store-1/status")) == "store-1"
    for method, path in [
        ("GET", f"{V1}/sites/a/status"),
        ("PATCH", f"{V1}/sites/a/status"),
        ("PUT", f"{V1}/sites//status"),
        ("PUT", f"{V1}/sites/a/b/status"),
        ("PUT", f"{V1}/sites/a/status/"),
        ("PUT", f"{V1}/sites/a"),
        ("PUT", f"{V1}/nodepools/a/status"),
    ]:
        assert status_site(scope(method, path)) is None, (method, path)
    assert status_site(scope("PUT", f"{V1}/sites/a/status", root_path="/x")) is None
    assert status_site({"type": "websocket", "path": f"{V1}/sites/a/status"}) is None


async def _call(
    port: Port, path: str, content_length: bytes, messages: list[dict[str, Any]]
) -> tuple[int, dict[str, Any]]:
    """One request straight into the ASGI app, its body in the given chunks."""
    pending = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop(0)
        await asyncio.Event().wait()  # the client says nothing more
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "PUT",
        "scheme": "https", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "server": ("testserver", 443), "client": ("127.0.0.1", 1),
        "headers": [(b"content-type", b"application/json"), (b"content-length", content_length)],
        "extensions": {TLS_EXTENSION: {CLIENT_CERT_KEY: port.wrapper.der}},
    }
    await port.lean(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(start["status"]), json.loads(body)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_an_agent_writing_too_fast_gets_the_routes_429_and_others_write_on(port: Port) -> None:
    clock = Clock()
    strict = RateLimiter(1.0, 2, clock=clock)
    # One limiter for the lean path and the full app, as the server has.
    port.plane.limiter = strict
    port.lean.limiter = strict
    agent_a = port.wrapper.der
    assert [_put(port, STATUS).status_code for _ in range(2)] == [200, 200]
    refused = _put(port, STATUS)
    assert refused.status_code == 429, refused.text
    assert refused.headers["Retry-After"] == "1"
    assert "writes faster than 1/s (burst 2)" in refused.json()["message"]
    assert port.full.calls == 1  # the route's own answer, not one made up here
    routed = _routed(port, STATUS)
    assert (routed.status_code, routed.json()) == (429, refused.json())
    # Telemetry draws on the same agent's bucket.
    upload = port.agents.post("/agent/v1/telemetry", json={"agentId": "a1", "intervals": []})
    assert upload.status_code == 429, upload.text
    # Each agent has its own bucket.
    port.wrapper.der = _der(port.ca, "b")
    assert _put(port, STATUS, "b").status_code == 200
    # A second later, a has a token again.
    port.wrapper.der = agent_a
    clock.now += 1.0
    assert _put(port, STATUS).status_code == 200
    assert port.lean.served == 4
