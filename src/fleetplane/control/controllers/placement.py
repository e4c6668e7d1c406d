"""The placement controller: re-plan the fleet when what it plans from changes."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from fleetplane.control.controllers.change_feed import ChangeFeed
from fleetplane.control.controllers.derive import (
    ArtifactIndex,
    artifacts_condition,
    missing_artifacts,
    site_workloads,
)
from fleetplane.control.controllers.fleet_view import PLANNED_KINDS, FleetView, load_view
from fleetplane.control.controllers.plan_diff import comparable, placement_diff
from fleetplane.control.controllers.planner import (
    Planner,
    engine_planner,
    keep_unreachable,
    planning_input,
)
from fleetplane.control.controllers.settings import ControllerSettings
from fleetplane.control.controllers.transactions import (
    PlacementHead,
    placement_head,
    write_placement,
    write_site_states,
)
from fleetplane.control.plane import SYSTEM, ControlPlane
from fleetplane.control.store.artifacts import ARTIFACT_EVENT_KIND
from fleetplane.control.store.artifacts import resolutions as artifact_resolutions
from fleetplane.control.store.errors import Conflict, NotFound
from fleetplane.model.placement import Placement

log = logging.getLogger(__name__)


class PlacementController:
    """Plans on start and after every (debounced) change; derives site desired states from the plan.

    Deriving in the same pass keeps one writer for both, so a site's revision
    never reflects a plan older than the one it follows. A pushed artifact
    that a Workload was waiting for changes no planning input: that pass
    only derives again, from the current plan.
    """

    name = "placement"

    def __init__(
        self, settings: ControllerSettings, planner: Planner | None = None,
        *, clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self._planner = planner
        self._clock = clock
        self.passes = 0

    async def run(self, plane: ControlPlane) -> None:
        planner = self._planner or engine_planner()
        feed = ChangeFeed(plane, (*PLANNED_KINDS, ARTIFACT_EVENT_KIND))
        await feed.start()
        replan = True
        while True:
            await asyncio.to_thread(self.reconcile, plane, planner, replan=replan)
            self.passes += 1
            ended = self._clock()
            await feed.next_change()
            await asyncio.sleep(hold_off(self._clock() - ended, self.settings.debounce))
            await feed.drain()
            replan = bool(feed.take_changes() - {ARTIFACT_EVENT_KIND})

    def reconcile(self, plane: ControlPlane, planner: Planner, *, replan: bool = True) -> None:
        with fewer_full_collections():
            self._reconcile(plane, planner, replan=replan)

    def _reconcile(self, plane: ControlPlane, planner: Planner, *, replan: bool) -> None:
        view = load_view(plane, self.settings.placement_name)
        artifacts = artifact_resolutions(plane.engine)
        missing = missing_artifacts(view.fleet, artifacts)
        placement = self._plan(plane, view, planner, missing) if replan else view.current
        self._derive(plane, view, placement, artifacts, missing)

    def _plan(
        self, plane: ControlPlane, view: FleetView, planner: Planner,
        missing: list[dict[str, str]],
    ) -> Placement | None:
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
            **_artifact_status(missing),
        }
        written = write_placement(
            plane.store, spec, status, name=self.settings.placement_name, actor=SYSTEM.name
        )
        log.info("wrote placement generation %d", written.generation)
        return Placement.model_validate({**written.to_document(), "status": None})

    def _derive(
        self, plane: ControlPlane, view: FleetView, placement: Placement | None,
        artifacts: ArtifactIndex, missing: list[dict[str, str]],
    ) -> None:
        if placement is None:
            return
        # Not ``store.get``: the spec (every assignment of the fleet) is not needed here.
        stored = placement_head(plane.store, self.settings.placement_name)
        specs = {
            site: {"site": site, "placementGeneration": stored.generation, "workloads": workloads}
            for site, workloads in site_workloads(placement, view.fleet, artifacts).items()
        }
        write_site_states(
            plane.store, specs, actor=SYSTEM.name, keep=self.settings.revisions_kept
        )
        self._report_artifacts(plane, stored, missing)

    def _report_artifacts(
        self, plane: ControlPlane, stored: PlacementHead, missing: list[dict[str, str]]
    ) -> None:
        """Keep the Placement's status naming the artifacts workloads wait for (no plan change)."""
        status = stored.status or {}
        wanted = _artifact_status(missing)
        if all(status.get(key) == value for key, value in wanted.items()):
            return
        try:
            plane.store.replace_status(
                "Placement", stored.name, {**status, **wanted},
                expected_version=stored.resource_version,
            )
        except (Conflict, NotFound) as error:  # rewritten meanwhile: the next pass reports
            log.warning("could not record missing artifacts on the Placement: %s", error)


def hold_off(quiet: float, debounce: float) -> float:
    """How long to wait before planning a change that came ``quiet`` seconds after the last pass.

    Leading-edge debounce: a change after a quiet spell (longer than the
    debounce) is planned at once, since waiting would only delay it; a change
    hard on the heels of a pass waits out the rest of the debounce window, so
    a burst of applies (a fleet being loaded file by file) is planned once or
    twice, never once per apply.
    """
    return max(0.0, debounce - quiet)


# While a pass runs: older generations collected 1/100 as often as by default (10, 10).
_PASS_THRESHOLDS = (1_000, 1_000)
_thresholds_lock = threading.Lock()
_passes_running = 0
_saved_thresholds: tuple[int, int, int] | None = None


@contextmanager
def fewer_full_collections() -> Iterator[None]:
    """Collect the older GC generations rarely while a pass runs (young ones as usual).

    A pass over thousands of sites allocates hundreds of thousands of
    containers, and with the default thresholds that set off several full
    collections, each walking the whole server heap (every agent's
    connection included): measured in process, about 40 % of a 2,000-site
    pass. The young generation is still collected as usual, so cyclic
    garbage made meanwhile waits at most until the pass ends, when the
    thresholds are restored. Process-wide (``gc`` is), so nested or
    concurrent passes restore only when the last one ends.
    """
    global _passes_running, _saved_thresholds
    with _thresholds_lock:
        if _passes_running == 0:
            _saved_thresholds = gc.get_threshold()
            gc.set_threshold(_saved_thresholds[0], *_PASS_THRESHOLDS)
        _passes_running += 1
    try:
        yield
    finally:
        with _thresholds_lock:
            _passes_running -= 1
            if _passes_running == 0 and _saved_thresholds is not None:
                gc.set_threshold(*_saved_thresholds)
                _saved_thresholds = None


def _artifact_status(missing: list[dict[str, str]]) -> dict[str, Any]:
    return {"missingArtifacts": missing, "conditions": [artifacts_condition(missing)]}
