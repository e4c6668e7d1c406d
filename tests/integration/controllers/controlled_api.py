"""An in-process server with controllers running (leader election included)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fastapi.testclient import TestClient
from fleet_docs import first_fit

from fleetplane.control.app import create_app
from fleetplane.control.controllers import ControllerSettings, build_controllers
from fleetplane.control.controllers.operations import router as operations_router
from fleetplane.control.plane import ControlPlane
from fleetplane.control.settings import Settings


class ControlledApi:
    """The app's test client, its admin token, helpers to mint tokens per role."""

    def __init__(self, client: TestClient, admin_token: str, plane: ControlPlane) -> None:
        self.client = client
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


def make_controlled_api(
    database_url: str, controllers: ControllerSettings
) -> Iterator[ControlledApi]:
    settings = Settings(database_url=database_url)
    plane = ControlPlane.open(settings)
    tokens: list[str] = []
    app = create_app(
        settings,
        controllers=build_controllers(controllers, planner=first_fit),
        announce=tokens.append,
        plane=plane,
    )
    if not any(getattr(r, "path", "").endswith("/{name}/lost") for r in app.routes):
        app.include_router(operations_router)
    with TestClient(app) as client:
        yield ControlledApi(client, tokens[0], plane)
