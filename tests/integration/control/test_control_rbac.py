"""Who may call what: every route for every person role, and status owners."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from api_harness import Api
from fastapi.testclient import TestClient
from manifests import IMAGE, documents, image_document, secret_document, site
from starlette.types import Receive, Scope, Send

from fleetplane.control.api.auth import PRINCIPAL_SCOPE_KEY
from fleetplane.control.app import create_app
from fleetplane.control.settings import Settings
from fleetplane.security.keyring import Keyring
from fleetplane.security.rbac import Principal, Role

V1 = "/apis/fleetplane/v1"

# (method, path, body) → expected status for admin, operator, viewer.
ROUTES: list[tuple[str, str, Any, tuple[int, int, int]]] = [
    ("GET", V1, None, (200, 200, 200)),
    ("GET", f"{V1}/sites", None, (200, 200, 200)),
    ("GET", f"{V1}/sites/a", None, (200, 200, 200)),
    ("GET", f"{V1}/sites/a/status", None, (200, 200, 200)),
    ("POST", f"{V1}/nodeimages", image_document("fresh"), (201, 201, 403)),
    ("PUT", f"{V1}/nodeimages/ubuntu", image_document(os_name="v2"), (200, 200, 403)),
    ("PATCH", f"{V1}/nodeimages/ubuntu", {"metadata": {"labels": {"x": "y"}}}, (200, 200, 403)),
    ("DELETE", f"{V1}/nodeimages/spare", None, (200, 200, 403)),
    ("PUT", f"{V1}/sites/a/status", {"metadata": {"name": "a"}, "status": {}}, (403, 403, 403)),
    ("PATCH", f"{V1}/sites/a/status", {"status": {}}, (403, 403, 403)),
    ("POST", f"{V1}/apply", IMAGE, (200, 200, 403)),
    ("GET", f"{V1}/placements", None, (200, 200, 200)),
    ("POST", f"{V1}/placements", {"kind": "Placement", "metadata": {"name": "p"}}, (422, 403, 403)),
    ("GET", f"{V1}/secrets", None, (200, 403, 403)),
    ("GET", f"{V1}/secrets/db", None, (200, 403, 403)),
    ("POST", f"{V1}/secrets", secret_document("other"), (201, 403, 403)),
    ("GET", "/api/v1/tokens", None, (200, 403, 403)),
    ("POST", "/api/v1/tokens", {"name": "n", "role": "viewer"}, (201, 403, 403)),
    ("DELETE", "/api/v1/tokens/nosuchtoken", None, (404, 403, 403)),
    ("GET", "/api/v1/audit", None, (200, 200, 200)),
    ("GET", "/api/v1/audit/verify", None, (200, 200, 200)),
]
ROLES = ("admin", "operator", "viewer")


def seeded(api: Api) -> Api:
    extra = image_document("spare")
    applied = api.request(
        "POST",
        f"{V1}/apply",
        content=documents(IMAGE, site("a"), _yaml(extra), _yaml(secret_document())),
    )
    assert applied.status_code == 200, applied.text
    return api


def _yaml(document: dict[str, Any]) -> str:
    import json

    return json.dumps(document) + "\n"


@pytest.mark.parametrize("role_index,role", list(enumerate(ROLES)))
def test_every_route_for_every_role(sqlite_api: Api, role_index: int, role: str) -> None:
    api = seeded(sqlite_api)
    failures = []
    for method, path, body, expected in ROUTES:
        kwargs: dict[str, Any] = {}
        if isinstance(body, str):
            kwargs["content"] = body
        elif body is not None:
            kwargs["json"] = body
        answer = api.request(method, path, role=role, **kwargs)
        if answer.status_code != expected[role_index]:
            failures.append(f"{method} {path}: {answer.status_code} != {expected[role_index]}")
    assert failures == []


class AsAgent:
    """Plays the agent port's role: the certificate layer puts a Principal into the scope."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            site_name = headers.get(b"x-test-agent-site")
            if site_name is not None:
                name = site_name.decode()
                scope = {
                    **scope,
                    PRINCIPAL_SCOPE_KEY: Principal(f"agent-{name}", Role.AGENT, site=name),
                }
        await self.app(scope, receive, send)


@pytest.fixture
def agent_client(sqlite_url: str, secrets_keyring: Keyring) -> Iterator[tuple[TestClient, str]]:
    tokens: list[str] = []
    app = create_app(
        Settings(database_url=sqlite_url, secrets_keyring=secrets_keyring),
        announce=tokens.append,
    )
    with TestClient(AsAgent(app)) as client:
        yield client, tokens[0]


def test_an_agent_writes_only_its_own_sites_status(agent_client: tuple[TestClient, str]) -> None:
    client, admin = agent_client
    admin_headers = {"Authorization": f"Bearer {admin}"}
    client.post(
        f"{V1}/apply", content=documents(IMAGE, site("a"), site("b")), headers=admin_headers
    )
    agent_a = {"x-test-agent-site": "a"}
    body = {"metadata": {"name": "a"}, "status": {"reachability": "Reachable"}}
    own = client.put(f"{V1}/sites/a/status", json=body, headers=agent_a)
    assert own.status_code == 200 and own.json()["status"]["reachability"] == "Reachable"
    patched = client.patch(
        f"{V1}/sites/a/status", json={"status": {"agentVersion": "1.2"}}, headers=agent_a
    )
    assert patched.status_code == 200
    assert patched.json()["status"] == {"reachability": "Reachable", "agentVersion": "1.2"}
    invalid = client.patch(
        f"{V1}/sites/a/status", json={"status": {"reachability": "Sleepy"}}, headers=agent_a
    )
    assert invalid.status_code == 422 and "status.reachability" in invalid.text
    other = client.put(
        f"{V1}/sites/b/status", json={**body, "metadata": {"name": "b"}}, headers=agent_a
    )
    assert other.status_code == 403
    assert client.put(f"{V1}/sites/a", json={}, headers=agent_a).status_code == 403
    assert client.get(f"{V1}/sites", headers=agent_a).status_code == 403
    # Status writes change the version but not the generation, and are not audited.
    site_a = client.get(f"{V1}/sites/a", headers=admin_headers).json()
    assert site_a["metadata"]["generation"] == 1
    audit = client.get("/api/v1/audit", headers=admin_headers).json()["items"]
    assert not any(item["action"] == "status" for item in audit)


def test_an_agent_reads_no_secret_its_site_does_not_reference(
    agent_client: tuple[TestClient, str],
) -> None:
    client, admin = agent_client
    admin_headers = {"Authorization": f"Bearer {admin}"}
    assert (
        client.post(f"{V1}/secrets", json=secret_document(), headers=admin_headers).status_code
        == 201
    )
    refused = client.get(f"{V1}/secrets/db", headers={"x-test-agent-site": "a"})
    assert refused.status_code == 403 and "not referenced" in refused.text
