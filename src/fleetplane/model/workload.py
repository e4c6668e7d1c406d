"""The Workload kind: what must run, with which SLOs, fed by which data sources."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from fleetplane.model.base import EmptyStatus, Resource, Spec
from fleetplane.model.infrastructure import AcceleratorKind, Arch
from fleetplane.model.units import (
    Cpu,
    Duration,
    Energy,
    Fraction,
    Power,
    Rate,
    Size,
    format_duration,
)

WorkloadClass = Literal["inference", "training", "streaming", "control", "batch"]

# Classes that serve requests and therefore have latency SLOs, versus classes
# that run to completion and therefore have deadlines. The split decides which
# SLO fields are allowed, and which parts of the engine apply (queueing vs.
# deadline feasibility).
REQUEST_CLASSES: frozenset[str] = frozenset({"inference", "streaming", "control"})
JOB_CLASSES: frozenset[str] = frozenset({"training", "batch"})


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


PERCENTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99, "p999": 0.999}


class LatencyTargets(Spec):
    p50: Duration | None = None
    p90: Duration | None = None
    p95: Duration | None = None
    p99: Duration | None = None
    p999: Duration | None = None

    def targets(self) -> list[tuple[float, float]]:
        """(quantile, seconds) pairs for the targets that are set, strictest quantile last."""
        out = []
        for key, q in PERCENTILES.items():
            value = getattr(self, key)
            if value is not None:
                out.append((q, value))
        return out

    @model_validator(mode="after")
    def _at_least_one(self) -> LatencyTargets:
        if not self.targets():
            raise ValueError("give at least one latency target, e.g. p99: 50ms")
        return self


class Slo(Spec):
    latency: LatencyTargets | None = None
    throughput: Rate | None = Field(default=None, description="minimum sustained requests/s")
    availability: Fraction | None = None
    deadline: Duration | None = Field(default=None, description="batch/training: finish within")


class DemandShare(Spec):
    source: str
    share: float = Field(
        default=1.0, gt=0.0, le=1.0, description="fraction of the source's traffic"
    )


class ModelArtifact(Spec):
    artifact: str
    size: Size
    updates_per_day: float = Field(default=0.0, ge=0.0)


class ArtifactSelector(Spec):
    """The release the replicas run: pushed with ``fleetplane artifact push --name --version``.

    The control plane resolves it to the release's sha256 digest in each
    site's desired state; the agent downloads, verifies and unpacks it and
    starts the replicas in its directory.
    """

    name: str = Field(min_length=1, max_length=253)
    version: str = Field(min_length=1, max_length=128)


class AcceleratorRequest(Spec):
    kind: AcceleratorKind
    count: PositiveInt = 1
    memory: Size = Field(default=0, description="minimum memory per accelerator")
    models: list[str] = Field(default_factory=list, description="allowed models; empty: any")


class ResourceRequest(Spec):
    """Per replica."""

    cpu: Cpu
    memory: Size
    accelerator: AcceleratorRequest | None = None

    @model_validator(mode="after")
    def _positive(self) -> ResourceRequest:
        if self.cpu <= 0:
            raise ValueError("cpu must be > 0 (e.g. '500m' or 2)")
        if self.memory <= 0:
            raise ValueError("memory must be > 0 (e.g. '512Mi')")
        return self


class ServiceTimeSpec(Spec):
    mean: Duration
    cv: float = Field(default=1.0, ge=0.0, description="coefficient of variation")
    distribution: Literal["auto", "deterministic", "exponential", "lognormal", "gamma"] = "auto"

    @field_validator("mean")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("service time mean must be > 0")
        return value

    @model_validator(mode="after")
    def _cv_fits_distribution(self) -> ServiceTimeSpec:
        # Deterministic and exponential fix the CV; a different one is a contradiction
        # the simulator and the latency predictor would each resolve differently.
        fixed = {"deterministic": 0.0, "exponential": 1.0}.get(self.distribution)
        if fixed is not None and self.cv != fixed:
            raise ValueError(
                f"a {self.distribution} service time has cv {fixed:g}, not {self.cv:g}; "
                f"set cv: {fixed:g} or choose distribution lognormal or gamma"
            )
        return self


class HardwareProfile(Spec):
    """How the workload performs on one kind of hardware.

    ``hardware`` is an accelerator model (``l4``, ``orin-agx``) or ``cpu``
    (optionally ``cpu/arm64``) for CPU-only execution.
    """

    hardware: str
    service_time: ServiceTimeSpec | None = None
    concurrency: PositiveInt = Field(default=1, description="requests served at once per replica")
    runtime: Duration | None = Field(
        default=None, description="batch/training: run time of the job"
    )
    energy_per_request: Energy = 0.0
    power: Power = Field(default=0.0, description="extra draw per busy replica")


class JobSchedule(Spec):
    """How often a batch or training job runs; each run lasts its profile's ``runtime``."""

    every: Duration = Field(
        description="time from the start of one run to the start of the next, e.g. 24h, 168h"
    )

    @field_validator("every")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("schedule.every must be > 0 (e.g. 24h for a nightly job)")
        return value

    def duty(self, runtime: float) -> float:
        """Fraction of the month a run of ``runtime`` seconds holds its replicas (at most 1)."""
        return min(1.0, runtime / self.every)


class StorageReads(Spec):
    reads: NonNegativeInt = 0
    media: list[str] = Field(default_factory=list, description="acceptable media; empty: any")


class RuntimeRequirements(Spec):
    container_runtime: str | None = None
    drivers: dict[str, str] = Field(
        default_factory=dict, description="driver → version specifier, e.g. cuda: '>=12.0'"
    )
    arches: list[Arch] = Field(default_factory=list)


class ReplicaBounds(Spec):
    min: PositiveInt = 1
    max: PositiveInt = 1000

    @model_validator(mode="after")
    def _ordered(self) -> ReplicaBounds:
        if self.max < self.min:
            raise ValueError(f"replicas.max ({self.max}) is below replicas.min ({self.min})")
        return self


class WorkloadSpec(Spec):
    class_: WorkloadClass = Field(alias="class")
    slo: Slo
    demand: list[DemandShare] = Field(default_factory=list)
    model: ModelArtifact | None = None
    artifact: ArtifactSelector | None = None
    resources: ResourceRequest
    profiles: list[HardwareProfile] = Field(min_length=1)
    storage: StorageReads = Field(default_factory=StorageReads)
    residency: list[str] = Field(default_factory=list, description="allowed zones; empty: any")
    runtime: RuntimeRequirements = Field(default_factory=RuntimeRequirements)
    replicas: ReplicaBounds = Field(default_factory=ReplicaBounds)
    schedule: JobSchedule | None = Field(
        default=None, description="batch/training: how often the job runs; none: continuously"
    )
    secrets: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _slo_fits_class(self) -> WorkloadSpec:
        cls = self.class_
        a_cls = f"{_article(cls)} {cls}"
        if cls in REQUEST_CLASSES:
            if self.slo.latency is None:
                raise ValueError(f"{a_cls} workload needs slo.latency (e.g. p99: 50ms)")
            if self.slo.deadline is not None:
                raise ValueError(f"slo.deadline is for batch/training, not {cls} workloads")
            if not self.demand:
                raise ValueError(f"{a_cls} workload needs demand: the data sources it serves")
            missing = [p.hardware for p in self.profiles if p.service_time is None]
            if missing:
                raise ValueError(f"profiles {missing} need serviceTime for {a_cls} workload")
            if self.schedule is not None:
                raise ValueError(
                    f"schedule is for batch/training jobs; {a_cls} workload serves requests "
                    "continuously (remove schedule)"
                )
        else:
            if self.slo.deadline is None:
                raise ValueError(f"{a_cls} workload needs slo.deadline (e.g. 6h)")
            if self.slo.latency is not None:
                raise ValueError(f"slo.latency is for request-serving workloads, not {cls}")
            missing = [p.hardware for p in self.profiles if p.runtime is None]
            if missing:
                raise ValueError(f"profiles {missing} need runtime for {a_cls} workload")
            if self.schedule is not None and self.slo.deadline > self.schedule.every:
                # A run allowed to end after the next one starts would overlap it:
                # the plan would hold one run's replicas but two runs would need them.
                raise ValueError(
                    f"slo.deadline ({format_duration(self.slo.deadline)}) is longer than "
                    f"schedule.every ({format_duration(self.schedule.every)}); a run must finish "
                    "before the next starts: shorten the deadline or run less often"
                )
        hardware = [p.hardware for p in self.profiles]
        dupes = sorted({h for h in hardware if hardware.count(h) > 1})
        if dupes:
            raise ValueError(f"profiles for {dupes} are given more than once")
        return self


class Workload(Resource[WorkloadSpec, EmptyStatus]):
    KIND: ClassVar[str] = "Workload"
    PLURAL: ClassVar[str] = "workloads"
    kind: str = "Workload"
