"""A whole fleet as loaded: every resource by kind and name, plus where it came from."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fleetplane.errors import SourcePosition
from fleetplane.model.base import Resource
from fleetplane.model.desired_state import SiteDesiredState
from fleetplane.model.infrastructure import DataSource, Link, NodeImage, Site
from fleetplane.model.placement import Placement
from fleetplane.model.policy import PlacementPolicy
from fleetplane.model.scenario import Scenario
from fleetplane.model.secret import Secret
from fleetplane.model.workload import Workload


@dataclass
class Fleet:
    """Resources keyed by name, in the order they were read (order matters for determinism)."""

    name: str = "default"
    sites: dict[str, Site] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)
    node_images: dict[str, NodeImage] = field(default_factory=dict)
    data_sources: dict[str, DataSource] = field(default_factory=dict)
    workloads: dict[str, Workload] = field(default_factory=dict)
    policies: dict[str, PlacementPolicy] = field(default_factory=dict)
    placements: dict[str, Placement] = field(default_factory=dict)
    scenarios: dict[str, Scenario] = field(default_factory=dict)
    site_desired_states: dict[str, SiteDesiredState] = field(default_factory=dict)
    secrets: dict[str, Secret] = field(default_factory=dict)
    # (kind, name) → where the document starts; for error messages after loading.
    positions: dict[tuple[str, str], SourcePosition] = field(default_factory=dict)

    _BY_KIND: ClassVar[dict[str, str]] = {
        "Site": "sites",
        "Link": "links",
        "NodeImage": "node_images",
        "DataSource": "data_sources",
        "Workload": "workloads",
        "PlacementPolicy": "policies",
        "Placement": "placements",
        "Scenario": "scenarios",
        "SiteDesiredState": "site_desired_states",
        "Secret": "secrets",
    }

    def collection(self, kind: str) -> dict[str, Any]:
        attr = self._BY_KIND.get(kind)
        if attr is None:
            raise KeyError(f"unknown kind {kind!r}")
        collection: dict[str, Any] = getattr(self, attr)
        return collection

    def add(self, resource: Resource[Any, Any], position: SourcePosition | None = None) -> None:
        """Add a resource; the caller checks duplicates first (the loader reports them)."""
        self.collection(resource.kind)[resource.name] = resource
        if position is not None:
            self.positions[(resource.kind, resource.name)] = position

    def resources(self) -> Iterator[Resource[Any, Any]]:
        for attr in self._BY_KIND.values():
            yield from getattr(self, attr).values()

    def position_of(self, kind: str, name: str) -> SourcePosition | None:
        return self.positions.get((kind, name))

    @property
    def policy(self) -> PlacementPolicy | None:
        """The fleet's policy when exactly one is given; the engine falls back to the default."""
        if len(self.policies) == 1:
            return next(iter(self.policies.values()))
        return None
