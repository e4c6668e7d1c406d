"""Controllers that run in the server process: placement (+ desired state) and reachability.

``build_controllers`` wraps them in leader election, so with several
replicas on one database exactly one runs them.

The names below load on first use: the CLI imports ``serve`` (and with it
this package) on every command, and the controllers pull in the placement
engine and the whole server, which only ``serve`` itself needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleetplane.control.controllers.assembly import build_controllers
    from fleetplane.control.controllers.placement import PlacementController
    from fleetplane.control.controllers.reachability import ReachabilityController
    from fleetplane.control.controllers.settings import ControllerSettings

__all__ = [
    "ControllerSettings",
    "PlacementController",
    "ReachabilityController",
    "build_controllers",
]

_MODULES = {
    "ControllerSettings": "fleetplane.control.controllers.settings",
    "PlacementController": "fleetplane.control.controllers.placement",
    "ReachabilityController": "fleetplane.control.controllers.reachability",
    "build_controllers": "fleetplane.control.controllers.assembly",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
