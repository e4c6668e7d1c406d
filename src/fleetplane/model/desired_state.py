"""The SiteDesiredState kind: what one site must run, derived from the Placement.

The control plane writes one per site (named after the site) with a
revision that only ever increases; the site's agent applies revisions in
order and keeps the last one on disk, so it can carry on — restart failed
replicas, fail over between its own node pools — while the control plane is
unreachable. Everything the agent needs for that is in here: it never has to
ask the control plane what a workload requires.
"""

from __future__ import annotations

import re
from typing import ClassVar

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from fleetplane.model.base import EmptyStatus, Resource, Spec
from fleetplane.model.units import Duration
from fleetplane.model.workload import ResourceRequest, RuntimeRequirements, WorkloadClass

_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


class ArtifactRef(Spec):
    """A content-addressed artifact the workload runs (model weights, image, binary)."""

    name: str
    digest: str = Field(description="sha256:<64 hex digits> of the artifact's content")
    size: NonNegativeInt = Field(default=0, description="bytes")

    @field_validator("digest")
    @classmethod
    def _sha256(cls, value: str) -> str:
        if not _DIGEST.match(value):
            raise ValueError(f"digest must be 'sha256:' followed by 64 hex digits, got {value!r}")
        return value


class LocalFailover(Spec):
    """What the agent may do on its own when a node pool fails.

    ``pools`` are the site's other pools that satisfy every hard constraint
    of the workload (hardware, runtime, residency), in order of preference;
    the agent moves replicas there and never anywhere else. ``minReplicas``
    is the floor it keeps running while it waits for the control plane.
    """

    pools: list[str] = Field(default_factory=list)
    min_replicas: NonNegativeInt = 0


class BatchJob(Spec):
    """What a batch scheduler (Slurm) needs for a batch/training workload beyond its resources."""

    partition: str | None = Field(
        default=None, description="default: the pool's name if the cluster has such a partition"
    )
    time_limit: Duration | None = Field(
        default=None, description="the workload's deadline; none: the partition's limit"
    )


class DesiredWorkload(Spec):
    workload: str
    workload_class: WorkloadClass
    pool: str = Field(description="node pool the replicas run on")
    profile: str = Field(description="hardware profile of the workload used on that pool")
    replicas: NonNegativeInt
    resources: ResourceRequest = Field(description="per replica")
    runtime: RuntimeRequirements = Field(default_factory=RuntimeRequirements)
    artifacts: list[ArtifactRef] = Field(default_factory=list)
    sources: dict[str, float] = Field(
        default_factory=dict, description="data source → share of its traffic served here"
    )
    secrets: list[str] = Field(default_factory=list, description="Secret names to deliver")
    env: dict[str, str] = Field(default_factory=dict)
    failover: LocalFailover = Field(default_factory=LocalFailover)
    batch: BatchJob | None = Field(default=None, description="batch/training workloads only")

    @model_validator(mode="after")
    def _failover_elsewhere(self) -> DesiredWorkload:
        if self.pool in self.failover.pools:
            raise ValueError(
                f"failover.pools of {self.workload!r} lists its own pool {self.pool!r}"
            )
        if self.failover.min_replicas > self.replicas:
            raise ValueError(
                f"failover.minReplicas ({self.failover.min_replicas}) of {self.workload!r} "
                f"exceeds replicas ({self.replicas})"
            )
        return self


class SiteDesiredStateSpec(Spec):
    site: str
    revision: PositiveInt = Field(description="increases by one with every change for the site")
    placement_generation: NonNegativeInt | None = Field(
        default=None, description="the Placement generation this revision was derived from"
    )
    workloads: list[DesiredWorkload] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_workloads(self) -> SiteDesiredStateSpec:
        seen: set[str] = set()
        for item in self.workloads:
            if item.workload in seen:
                raise ValueError(f"workload {item.workload!r} is listed twice")
            seen.add(item.workload)
        return self


class SiteDesiredState(Resource[SiteDesiredStateSpec, EmptyStatus]):
    KIND: ClassVar[str] = "SiteDesiredState"
    PLURAL: ClassVar[str] = "sitedesiredstates"
    kind: str = "SiteDesiredState"

    @model_validator(mode="after")
    def _named_after_site(self) -> SiteDesiredState:
        if self.metadata.name != self.spec.site:
            raise ValueError(
                f"a SiteDesiredState is named after its site: metadata.name "
                f"{self.metadata.name!r} != spec.site {self.spec.site!r}"
            )
        return self
