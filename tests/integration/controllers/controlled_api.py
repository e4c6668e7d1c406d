"""An in-process server with controllers running (leader election included)."""

from __future__ import annotations

from collections.abc import Iterator

from api_harness import Api, make_api
from fleet_docs import first_fit

from fleetplane.control.controllers import ControllerSettings, build_controllers
from fleetplane.control.settings import Settings


def make_controlled_api(database_url: str, controllers: ControllerSettings) -> Iterator[Api]:
    yield from make_api(
        Settings(database_url=database_url),
        controllers=build_controllers(controllers, planner=first_fit),
    )
