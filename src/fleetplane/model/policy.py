"""The PlacementPolicy kind: objective weights, CEL rules, move costs."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field, NonNegativeInt, model_validator

from fleetplane.model.base import EmptyStatus, Resource, Spec
from fleetplane.model.units import HOURS_PER_MONTH, Duration, Fraction, Money


class Objective(Spec):
    """Weights of the terms of the objective (all in money per month once weighted)."""

    cost: float = Field(default=1.0, ge=0.0)
    energy: float = Field(default=1.0, ge=0.0, description="weight of the energy bill")
    latency: float = Field(
        default=0.0, ge=0.0, description="money per month per second of predicted p99"
    )


class Rule(Spec):
    """``when`` selects (workload, site) pairs; ``require`` must hold; ``prefer`` is a bonus.

    Variables in CEL: ``workload`` and ``site`` (and ``pool``): see docs/policy.md.
    A ``prefer`` rule whose expression is false adds ``weight`` (money per
    month) to the cost of that candidate, so weights compare with prices.
    """

    name: str
    description: str | None = None
    when: str = "true"
    require: str | None = None
    prefer: str | None = None
    weight: Money = 0.0

    @model_validator(mode="after")
    def _one_action(self) -> Rule:
        if (self.require is None) == (self.prefer is None):
            raise ValueError(f"rule {self.name!r} needs exactly one of 'require' or 'prefer'")
        if self.prefer is not None and self.weight <= 0:
            raise ValueError(f"rule {self.name!r}: a prefer rule needs a weight > 0 ($/month)")
        return self


class MoveCost(Spec):
    """What it costs to move one replica: model transfer is priced by the engine, plus this.

    ``paybackPeriod``: a move's cost is paid once, its saving every month; a
    move is made only when the saving over this period beats the cost
    (saving per month × period in months > cost). One month by default: a
    move must pay for itself within a month, before the demand it was planned
    for is likely to have changed; longer periods move more eagerly.
    """

    disruption: Money = Field(default=50.0, description="money per moved replica")
    include_transfer: bool = True
    payback_period: Duration = Field(
        default=HOURS_PER_MONTH * 3600.0,
        gt=0.0,
        description="time within which a move's saving must repay its one-off cost",
    )


class Reevaluation(Spec):
    interval: Duration = 300.0
    latency_drift: Fraction = Field(default=0.2, description="re-plan when p99 drifts this much")
    demand_drift: Fraction = Field(default=0.2)


class PlacementPolicySpec(Spec):
    objective: Objective = Field(default_factory=Objective)
    rules: list[Rule] = Field(default_factory=list)
    failure_domain: str = Field(default="site", description="'site' or a site label, e.g. 'region'")
    move_cost: MoveCost = Field(default_factory=MoveCost)
    move_budget: NonNegativeInt | None = Field(default=None, description="max moves per re-plan")
    reevaluation: Reevaluation = Field(default_factory=Reevaluation)

    @model_validator(mode="after")
    def _unique_rules(self) -> PlacementPolicySpec:
        names = [r.name for r in self.rules]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"rule names must be unique; repeated: {dupes}")
        return self


class PlacementPolicy(Resource[PlacementPolicySpec, EmptyStatus]):
    KIND: ClassVar[str] = "PlacementPolicy"
    PLURAL: ClassVar[str] = "placementpolicies"
    kind: str = "PlacementPolicy"
