"""The registry of resource kinds: kind name → model class."""

from __future__ import annotations

from typing import Any

from fleetplane.model.base import Resource
from fleetplane.model.desired_state import SiteDesiredState
from fleetplane.model.infrastructure import DataSource, Link, NodeImage, Site
from fleetplane.model.placement import Placement
from fleetplane.model.policy import PlacementPolicy
from fleetplane.model.scenario import Scenario
from fleetplane.model.secret import Secret
from fleetplane.model.workload import Workload

AnyResource = Resource[Any, Any]

KINDS: dict[str, type[AnyResource]] = {
    cls.KIND: cls
    for cls in (
        Site,
        Link,
        NodeImage,
        DataSource,
        Workload,
        PlacementPolicy,
        Placement,
        Scenario,
        SiteDesiredState,
        Secret,
    )
}


def kind_class(kind: str) -> type[AnyResource] | None:
    return KINDS.get(kind)
