"""The Scenario kind: traffic, faults and duration for the simulator."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveInt, model_validator

from fleetplane.model.base import EmptyStatus, Resource, Spec
from fleetplane.model.units import Duration, Fraction, Rate


class Burst(Spec):
    at: Duration
    duration: Duration
    multiplier: float = Field(gt=0.0)


class TrafficSpec(Spec):
    """Traffic of one data source; fields left out keep the DataSource's values."""

    source: str
    pattern: Literal["poisson", "diurnal", "trace"] = "poisson"
    rate: Rate | None = None
    scale: float = Field(default=1.0, gt=0.0)
    bursts: list[Burst] = Field(default_factory=list)
    trace: str | None = Field(default=None, description="CSV file of arrival timestamps")

    @model_validator(mode="after")
    def _trace_needs_file(self) -> TrafficSpec:
        if self.pattern == "trace" and not self.trace:
            raise ValueError("pattern 'trace' needs trace: a CSV file of arrival timestamps")
        return self


class Fault(Spec):
    type: Literal["siteDown", "linkDegraded", "partition"]
    at: Duration
    duration: Duration
    site: str | None = None
    link: str | None = None
    peer: str | None = None
    latency_factor: float = Field(default=1.0, ge=1.0)
    extra_loss: Fraction = 0.0

    @model_validator(mode="after")
    def _targets(self) -> Fault:
        if self.type == "siteDown" and not self.site:
            raise ValueError("a siteDown fault needs site")
        if self.type == "linkDegraded" and not self.link:
            raise ValueError("a linkDegraded fault needs link (the Link's name)")
        if self.type == "partition" and not (self.site and self.peer):
            raise ValueError("a partition fault needs site and peer")
        return self


class ScenarioSpec(Spec):
    duration: Duration
    seed: int = 0
    demand_scale: float = Field(default=1.0, gt=0.0)
    traffic: list[TrafficSpec] = Field(default_factory=list)
    faults: list[Fault] = Field(default_factory=list)
    timeout: Duration = 10.0
    detection_delay: Duration = 5.0
    routing: Literal["shares", "nearest", "leastLoaded"] = "shares"
    replications: PositiveInt = 1


class Scenario(Resource[ScenarioSpec, EmptyStatus]):
    KIND: ClassVar[str] = "Scenario"
    PLURAL: ClassVar[str] = "scenarios"
    kind: str = "Scenario"
