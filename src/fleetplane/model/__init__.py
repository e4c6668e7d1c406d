"""The fleet model: resource kinds, units and the loader."""

from fleetplane.model.fleet import Fleet
from fleetplane.model.infrastructure import DataSource, Link, NodeImage, Site
from fleetplane.model.placement import Placement
from fleetplane.model.policy import PlacementPolicy
from fleetplane.model.scenario import Scenario
from fleetplane.model.workload import Workload

__all__ = [
    "DataSource",
    "Fleet",
    "Link",
    "NodeImage",
    "Placement",
    "PlacementPolicy",
    "Scenario",
    "Site",
    "Workload",
]
