"""The placement controller with the real placement engine: examples/retail-edge through the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from fleet_docs import wait_for

from fleetplane.control.app import create_app
from fleetplane.control.controllers import ControllerSettings, build_controllers
from fleetplane.control.plane import ControlPlane
from fleetplane.control.settings import Settings
from fleetplane.model.loader import load_fleet

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "retail-edge"
V1 = "/apis/fleetplane/v1"


def _stream(directory: Path) -> str:
    return "\n---\n".join(path.read_text() for path in sorted(directory.glob("*.yaml")))


def test_retail_edge_applied_through_the_api_is_planned_by_the_engine(tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'store.db'}")
    plane = ControlPlane.open(settings)
    tokens: list[str] = []
    app = create_app(
        settings,
        plane=plane,
        announce=tokens.append,
        # No planner given: the controllers call fleetplane.placement.plan.
        controllers=build_controllers(ControllerSettings(debounce=0.05)),
    )
    fleet = load_fleet(EXAMPLE)
    with TestClient(app) as client:
        client.headers["Authorization"] = f"Bearer {tokens[0]}"
        applied = client.post(f"{V1}/apply", content=_stream(EXAMPLE),
                              headers={"Content-Type": "application/yaml"})
        assert applied.status_code == 200, applied.text

        def placement() -> dict[str, Any] | None:
            answer = client.get(f"{V1}/placements/fleet")
            return answer.json() if answer.status_code == 200 else None

        planned = wait_for(placement, 120, "the engine's Placement")
        spec = planned["spec"]
        assert spec["solver"]["name"] != "first-fit"
        placed = {item["workload"] for item in spec["workloads"]}
        unplaceable = {item["workload"] for item in spec.get("unplaceable", [])}
        # Every workload is accounted for: placed or reported, never dropped.
        assert placed | unplaceable == set(fleet.workloads)
        assert placed
        for item in spec["workloads"]:
            for assignment in item["assignments"]:
                assert assignment["site"] in fleet.sites
        assert planned["status"]["diff"]["previousGeneration"] == 0

        def desired_states() -> dict[str, Any] | None:
            answer = client.get(f"{V1}/sitedesiredstates")
            items = answer.json()["items"] if answer.status_code == 200 else []
            return {i["metadata"]["name"]: i for i in items} if len(items) == len(
                fleet.sites) else None

        states = wait_for(desired_states, 60, "one SiteDesiredState per site")
        running = {
            (site, workload["workload"].split("@")[0])
            for site, state in states.items()
            for workload in state["spec"]["workloads"]
        }
        expected = {
            (assignment["site"], item["workload"])
            for item in spec["workloads"]
            for assignment in item["assignments"]
        }
        assert running == expected
        assert all(state["spec"]["revision"] == 1 for state in states.values())
    plane.close()
