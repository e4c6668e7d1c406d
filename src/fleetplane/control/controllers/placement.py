"""The placement controller: re-plan the fleet when what it plans from changes."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fleetplane.control.controllers.change_feed import ChangeFeed
from fleetplane.control.controllers.derive import site_workloads
from fleetplane.control.controllers.fleet_view import PLANNED_KINDS, FleetView, load_view
from fleetplane.control.controllers.plan_diff import comparable, placement_diff
from fleetplane.control.controllers.planner import (
    Planner,
    engine_planner,
    keep_unreachable,
    planning_input,
)
from fleetplane.control.controllers.settings import ControllerSettings
from fleetplane.control.controllers.transactions import write_placement, write_site_states
from fleetplane.control.plane import SYSTEM, ControlPlane
from fleetplane.control.store.artifacts import resolutions as artifact_resolutions
from fleetplane.model.placement import Placement

log = logging.getLogger(__name__)


class PlacementController:
    """Plans on start and after every (debounced) change; derives site desired states from the plan.

    Deriving in the same pass keeps one writer for both, so a site's revision
    never reflects a plan older than the one it follows.
    """

    name = "placement"

    def __init__(self, settings: ControllerSettings, planner: Planner | None = None) -> None:
        self.settings = settings
        self._planner = planner
        self.passes = 0

    async def run(self, plane: ControlPlane) -> None:
        planner = self._planner or engine_planner()
        feed = ChangeFeed(plane, PLANNED_KINDS)
        await feed.start()
        while True:
            await asyncio.to_thread(self.reconcile, plane, planner)
            self.passes += 1
            await feed.next_change()
            # Debounce: a burst of applies (or a fleet being loaded) is planned once.
            await asyncio.sleep(self.settings.debounce)
            await feed.drain()

    def reconcile(self, plane: ControlPlane, planner: Planner) -> None:
        view = load_view(plane, self.settings.placement_name)
        placement = self._plan(plane, view, planner)
        self._derive(plane, view, placement)

    def _plan(self, plane: ControlPlane, view: FleetView, planner: Planner) -> Placement | None:
        if not view.fleet.sites:
            return view.current
        fleet, current = planning_input(view.fleet, view.reachability, view.current)
        planned = planner(fleet, current)
        planned, restored = keep_unreachable(planned, view.current, view.reachability, fleet)
        spec = planned.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
        if view.current is not None:
            old = view.current.spec.model_dump(mode="json", by_alias=True, exclude_none=True)
            if comparable(old) == comparable(spec):
                return view.current
        status: dict[str, Any] = {
            "diff": placement_diff(view.current, planned, view.current_generation),
            "unplaceable": [u.workload for u in planned.spec.unplaceable],
            "keptOnUnreachableSites": restored,
            "basedOnResourceVersion": str(view.version),
        }
        written = write_placement(
            plane.store, spec, status, name=self.settings.placement_name, actor=SYSTEM.name
        )
        log.info("wrote placement generation %d", written.generation)
        return Placement.model_validate({**written.to_document(), "status": None})

    def _derive(self, plane: ControlPlane, view: FleetView, placement: Placement | None) -> None:
        if placement is None:
            return
        generation = plane.store.get("Placement", self.settings.placement_name).generation
        specs = {
            site: {"site": site, "placementGeneration": generation, "workloads": workloads}
            for site, workloads in site_workloads(
                placement, view.fleet, artifact_resolutions(plane.engine)
            ).items()
        }
        write_site_states(
            plane.store, specs, actor=SYSTEM.name, keep=self.settings.revisions_kept
        )
