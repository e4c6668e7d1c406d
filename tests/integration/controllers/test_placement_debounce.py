"""The placement controller's debounce holds back only changes that follow a pass closely."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from api_harness import make_api
from fleet_docs import documents, first_fit, site, wait_for, workload

from fleetplane.control.controllers import (
    ControllerSettings,
    PlacementController,
    ReachabilityController,
)
from fleetplane.control.controllers.placement import hold_off
from fleetplane.control.leader import LeaderElected
from fleetplane.control.settings import Settings


def test_hold_off_waits_out_only_the_rest_of_the_window() -> None:
    assert hold_off(quiet=0.0, debounce=1.0) == 1.0
    assert hold_off(quiet=0.25, debounce=1.0) == pytest.approx(0.75)
    # After a quiet spell longer than the window, waiting would only delay the change.
    assert hold_off(quiet=1.0, debounce=1.0) == 0.0
    assert hold_off(quiet=90.0, debounce=1.0) == 0.0
    assert hold_off(quiet=0.0, debounce=0.0) == 0.0


# Far longer than any wait below: a change held for the whole window would time them out.
WINDOW = 300.0


class SkippingClock:
    """Monotonic time that a test can move on, to stand for a quiet spell."""

    def __init__(self) -> None:
        self.skipped = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.skipped


@pytest.fixture
def clock() -> SkippingClock:
    return SkippingClock()


@pytest.fixture
def controller(clock: SkippingClock) -> PlacementController:
    return PlacementController(ControllerSettings(debounce=WINDOW), first_fit, clock=clock)


@pytest.fixture
def api(database_url: str, controller: PlacementController) -> Iterator[Any]:
    settings = controller.settings
    controllers = [controller, ReachabilityController(settings)]
    yield from make_api(
        Settings(database_url=database_url),
        controllers=[LeaderElected(controllers, settings.lease_ttl, None)],
    )


def _generation(api: Any) -> int:
    answer = api.request("GET", "/apis/fleetplane/v1/placements/fleet")
    return int(answer.json()["metadata"]["generation"]) if answer.status_code == 200 else 0


def _apply(api: Any, text: str) -> None:
    answer = api.request(
        "POST", "/apis/fleetplane/v1/apply", content=text,
        headers={"Content-Type": "application/yaml"},
    )
    assert answer.status_code == 200, answer.text


def test_a_change_after_a_quiet_spell_is_planned_at_once_a_close_one_waits(
    api: Any, controller: PlacementController, clock: SkippingClock
) -> None:
    # The start pass (an empty store) has run; then a spell longer than the window.
    wait_for(lambda: controller.passes >= 1, what="the start pass")
    clock.skipped += 2 * WINDOW
    _apply(api, documents(site("a"), workload("web")))
    first = wait_for(lambda: _generation(api), timeout=60, what="a Placement planned at once")
    # Hard on the heels of that pass: this change waits out the rest of the window.
    _apply(api, documents(workload("batch")))
    with pytest.raises(AssertionError, match="timed out"):
        wait_for(lambda: _generation(api) > first, timeout=2.0, what="a held-back pass")
