"""The Placement kind: the plan for the whole fleet, with predictions and reasons."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from pydantic import Field

from fleetplane.model.base import EmptyStatus, Resource, Spec


class Assignment(Spec):
    site: str
    pool: str
    profile: str
    replicas: int = Field(ge=1)
    sources: dict[str, float] = Field(
        default_factory=dict, description="data source → share of its traffic routed here"
    )
    pinned: bool = False


class CostBreakdown(Spec):
    """Money per month."""

    compute: float = 0.0
    egress: float = 0.0
    model_distribution: float = 0.0
    energy: float = 0.0
    preference_penalty: float = 0.0

    @property
    def total(self) -> float:
        return self.compute + self.egress + self.model_distribution + self.energy

    @classmethod
    def summed(cls, items: Iterable[CostBreakdown]) -> CostBreakdown:
        """``sum(items, CostBreakdown())`` field by field in the same order, building one model,
        not one per addition (a large plan adds tens of thousands)."""
        acc = [0.0] * len(_COST_FIELDS)
        for item in items:
            acc = [a + getattr(item, f) for a, f in zip(acc, _COST_FIELDS, strict=True)]
        return cls(**dict(zip(_COST_FIELDS, acc, strict=True)))

    def __add__(self, other: CostBreakdown) -> CostBreakdown:
        return CostBreakdown(**{f: getattr(self, f) + getattr(other, f) for f in _COST_FIELDS})


# Read once: ``model_fields`` is a slow descriptor in pydantic 2.11+.
_COST_FIELDS = tuple(CostBreakdown.model_fields)


class LatencyPrediction(Spec):
    """Predicted end-to-end latency percentiles in seconds (None: not a request workload)."""

    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    p999: float | None = None


class WorkloadPlacement(Spec):
    workload: str
    workload_class: str
    assignments: list[Assignment]
    predicted: LatencyPrediction = Field(default_factory=LatencyPrediction)
    slo_p99: float | None = None
    completion_time: float | None = Field(default=None, description="batch/training, seconds")
    cost: CostBreakdown = Field(default_factory=CostBreakdown)
    cost_per_1k_requests: float | None = None
    failure_domains: list[str] = Field(default_factory=list)
    rules_fired: list[str] = Field(default_factory=list)


class RejectionSummary(Spec):
    constraint: str
    sites: int
    example: str = Field(description="one site's reason, in words")


class Unplaceable(Spec):
    workload: str
    reason: str
    rejections: list[RejectionSummary] = Field(default_factory=list)
    closest_miss: str | None = None


class SolverInfo(Spec):
    name: str
    version: str
    seed: int
    optimality_gap: float | None = None
    time_seconds: float | None = None
    status: str = "ok"
    objective: float | None = Field(default=None, description="the objective the solver minimised")
    bound: float | None = Field(default=None, description="proven lower bound on the objective")
    time_limit: float | None = None


class PlacementChange(Spec):
    """One workload's change against the current plan (re-planning) or the base plan (what-if)."""

    workload: str
    action: str = Field(description="moved, scaled, placed, unplaced")
    before: list[str] = Field(default_factory=list, description="site/pool ×replicas")
    after: list[str] = Field(default_factory=list)
    reason: str = ""
    cost_delta: float = Field(default=0.0, description="money per month, after - before")
    move_cost: float = Field(default=0.0, description="one-off cost of the move")


class PlacementSpec(Spec):
    fleet: str = "default"
    policy: str | None = None
    workloads: list[WorkloadPlacement] = Field(default_factory=list)
    unplaceable: list[Unplaceable] = Field(default_factory=list)
    cost: CostBreakdown = Field(default_factory=CostBreakdown)
    solver: SolverInfo
    explanation: list[str] = Field(default_factory=list)
    changes: list[PlacementChange] = Field(
        default_factory=list, description="against the current plan, when re-planned from one"
    )


class Placement(Resource[PlacementSpec, EmptyStatus]):
    KIND: ClassVar[str] = "Placement"
    PLURAL: ClassVar[str] = "placements"
    kind: str = "Placement"
