"""The controllers ``serve`` runs, behind leader election."""

from __future__ import annotations

from fleetplane.control.controllers.placement import PlacementController
from fleetplane.control.controllers.planner import Planner
from fleetplane.control.controllers.reachability import ReachabilityController
from fleetplane.control.controllers.settings import ControllerSettings
from fleetplane.control.leader import LeaderElected
from fleetplane.control.plane import Controller


def build_controllers(
    settings: ControllerSettings | None = None,
    *,
    planner: Planner | None = None,
    holder: str | None = None,
) -> list[Controller]:
    settings = settings or ControllerSettings()
    inner: list[Controller] = [
        PlacementController(settings, planner),
        ReachabilityController(settings),
    ]
    return [LeaderElected(inner, settings.lease_ttl, holder)]
