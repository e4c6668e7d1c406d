"""An in-process control plane app and its test client, with tokens per role.

One harness for the API tests (``make_api``) and the controller tests
(``controlled_api.make_controlled_api``, which also runs controllers).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient

from fleetplane.control.app import create_app
from fleetplane.control.plane import ControlPlane
from fleetplane.control.settings import Settings


class Api:
    """The app's test client, its admin token, helpers to mint tokens per role."""

    def __init__(self, client: TestClient, admin_token: str, plane: ControlPlane) -> None:
        self.client = client
        self.admin_token = admin_token
        self.plane = plane
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

    def write_site_status(self, name: str, status: dict[str, Any]) -> None:
        """As the site's agent would (tests of the agent port cover that path)."""
        self.plane.store.replace_status("Site", name, status)

    def site_status(self, name: str) -> dict[str, Any]:
        return self.plane.store.get("Site", name).status or {}


def make_api(settings: Settings, **app_options: Any) -> Iterator[Api]:
    """A started app (``create_app`` options passed on); its admin token is the first one."""
    plane = app_options.pop("plane", None) or ControlPlane.open(settings)
    tokens: list[str] = []
    app = create_app(settings, announce=tokens.append, plane=plane, **app_options)
    with TestClient(app) as client:
        yield Api(client, tokens[0], plane)
