"""The Scenario kind: traffic, faults and duration for the simulator (docs/simulate.md)."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, PositiveInt, ValidationInfo, field_validator, model_validator

from fleetplane.model.base import EmptyStatus, Resource, Spec
from fleetplane.model.units import Duration, Fraction, Rate


def _positive_duration(value: float, what: str) -> float:
    if value <= 0:
        raise ValueError(f"{what} must be longer than 0s")
    return value


class Burst(Spec):
    """The source's rate is multiplied by ``multiplier`` from ``at`` for ``duration``."""

    at: Duration
    duration: Duration
    multiplier: float = Field(gt=0.0)

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: float) -> float:
        return _positive_duration(value, "a burst's duration")


class TrafficSpec(Spec):
    """Traffic of one data source; fields left out keep the DataSource's values."""

    source: str
    pattern: Literal["poisson", "diurnal", "trace"] = "poisson"
    rate: Rate | None = Field(default=None, description="peak request rate; default: the source's")
    scale: float = Field(default=1.0, gt=0.0)
    bursts: list[Burst] = Field(default_factory=list)
    trace: str | None = Field(
        default=None,
        description="CSV file of arrival timestamps in seconds (relative to the scenario file)",
    )
    diurnal: list[float] | None = Field(
        default=None,
        description="24 hourly multipliers of the peak rate; default: the source's diurnal",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TrafficSpec:
        if self.pattern == "trace":
            if not self.trace:
                raise ValueError("pattern 'trace' needs trace: a CSV file of arrival timestamps")
            if self.rate is not None:
                raise ValueError("a trace sets its own rate; remove rate or use pattern: poisson")
            if self.bursts:
                raise ValueError("a trace already holds its bursts; remove bursts")
        elif self.trace:
            raise ValueError(f"trace needs pattern: trace (pattern is {self.pattern!r})")
        if self.diurnal is not None:
            if self.pattern != "diurnal":
                raise ValueError("diurnal multipliers need pattern: diurnal")
            if len(self.diurnal) != 24:
                raise ValueError(f"diurnal needs 24 hourly values, got {len(self.diurnal)}")
            if any(not 0.0 <= v <= 1.0 for v in self.diurnal):
                raise ValueError("diurnal values are fractions of the peak rate, each in [0, 1]")
        return self


class Fault(Spec):
    """Something breaks at ``at`` for ``duration``.

    ``siteDown`` takes ``site``; ``linkDegraded`` takes ``link`` and a
    ``latencyFactor`` and/or ``extraLoss``; ``partition`` takes ``site`` and
    ``peer`` (the two sites stop reaching each other).
    """

    type: Literal["siteDown", "linkDegraded", "partition"]
    at: Duration
    duration: Duration
    site: str | None = None
    link: str | None = None
    peer: str | None = None
    latency_factor: float = Field(default=1.0, ge=1.0)
    extra_loss: Fraction = 0.0

    @field_validator("duration")
    @classmethod
    def _positive(cls, value: float) -> float:
        return _positive_duration(value, "a fault's duration")

    @model_validator(mode="after")
    def _targets(self) -> Fault:
        if self.type == "siteDown" and not self.site:
            raise ValueError("a siteDown fault needs site")
        if self.type == "linkDegraded" and not self.link:
            raise ValueError("a linkDegraded fault needs link (the Link's name)")
        if self.type == "partition" and not (self.site and self.peer):
            raise ValueError("a partition fault needs site and peer")
        if self.type == "partition" and self.site == self.peer:
            raise ValueError(f"a partition needs two different sites; both are {self.site!r}")
        if self.type == "linkDegraded" and self.latency_factor == 1.0 and self.extra_loss == 0.0:
            raise ValueError("a linkDegraded fault needs latencyFactor > 1 or extraLoss > 0")
        unused = {
            "siteDown": ("link", "peer", "latency_factor", "extra_loss"),
            "partition": ("link", "latency_factor", "extra_loss"),
            "linkDegraded": ("site", "peer"),
        }[self.type]
        given = [name for name in unused if name in self.model_fields_set]
        if given:
            fields = ", ".join(Fault.model_fields[name].alias or name for name in given)
            raise ValueError(f"a {self.type} fault does not take {fields}")
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
    pattern: Literal["poisson", "diurnal"] = Field(
        default="poisson",
        description="pattern of data sources not listed under traffic "
        "(diurnal: sources without a diurnal shape stay at their peak rate)",
    )
    # Added for the simulator; every field has a default, so older files still load.
    warmup: Duration = Field(
        default=0.0, description="requests sent before this are simulated but not counted"
    )
    time_of_day: Duration = Field(
        default=0.0, description="time of day at simulated time 0, for diurnal profiles"
    )
    failover: bool = Field(
        default=True, description="route around a failed site after detectionDelay"
    )
    deadline_propagation: bool = Field(
        default=True, description="servers skip requests whose client has already timed out"
    )
    replica_queues: Literal["shared", "perReplica"] = Field(
        default="shared",
        description="shared: an assignment's replicas serve one FIFO queue; "
        "perReplica: one queue per replica",
    )

    @field_validator("duration", "timeout")
    @classmethod
    def _positive(cls, value: float, info: ValidationInfo) -> float:
        return _positive_duration(value, str(info.field_name))

    @model_validator(mode="after")
    def _warmup_fits(self) -> ScenarioSpec:
        if self.warmup >= self.duration:
            raise ValueError("warmup must be shorter than duration, or nothing is counted")
        if self.time_of_day >= 86400.0:
            raise ValueError("timeOfDay is a time within a day: below 24h")
        sources = [t.source for t in self.traffic]
        repeated = sorted({s for s in sources if sources.count(s) > 1})
        if repeated:
            raise ValueError(f"traffic for {repeated} is given more than once; merge the entries")
        return self


class Scenario(Resource[ScenarioSpec, EmptyStatus]):
    KIND: ClassVar[str] = "Scenario"
    PLURAL: ClassVar[str] = "scenarios"
    kind: str = "Scenario"
