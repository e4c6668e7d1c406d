"""The fleet as the placement engine sees it, read from the store in one snapshot."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fleetplane.control.plane import ControlPlane
from fleetplane.model.fleet import Fleet
from fleetplane.model.placement import Placement

# Kinds whose changes call for a new plan.
PLANNED_KINDS = ("Site", "Link", "Workload", "DataSource", "NodeImage", "PlacementPolicy")


@dataclass
class FleetView:
    fleet: Fleet
    version: int
    # Site name → status.reachability as last written (Unknown when never).
    reachability: dict[str, str] = field(default_factory=dict)
    current: Placement | None = None
    current_generation: int = 0


def load_view(plane: ControlPlane, placement_name: str) -> FleetView:
    # Not the derived SiteDesiredStates: thousands of documents the plan does not need.
    resources, version = plane.store.list_resources(kinds=(*PLANNED_KINDS, "Placement"))
    fleet = Fleet(name=plane.settings.fleet_name)
    view = FleetView(fleet, version)
    for resource in resources:
        if resource.kind == "Placement" and resource.name == placement_name:
            model = plane.models.model(resource)
            if isinstance(model, Placement):
                view.current = model
                view.current_generation = resource.generation
            continue
        if resource.kind not in PLANNED_KINDS:
            continue
        found = plane.models.model(resource)
        if found is None:
            continue
        fleet.add(found)
        if resource.kind == "Site":
            status: dict[str, Any] = resource.status or {}
            view.reachability[resource.name] = str(status.get("reachability", "Unknown"))
    return view
