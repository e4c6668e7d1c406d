"""A workload as the engine sees it: demand resolved to sites and rates, profiles parsed.

Resolving names once (data source → site index, residency zone, rate) keeps
every later stage free of dictionary lookups and of the model's optional
fields, and gives each source and profile a stable index.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fleetplane.errors import Problem, SourcePosition, ValidationError
from fleetplane.latency.distributions import ServiceTime
from fleetplane.model.fleet import Fleet
from fleetplane.model.workload import (
    JOB_CLASSES,
    AcceleratorRequest,
    HardwareProfile,
    Workload,
)
from fleetplane.placement._internal.fleet_index import FleetIndex

SECONDS_PER_MONTH = 730.0 * 3600.0


@dataclass(frozen=True)
class SourceDemand:
    """One data source feeding a workload, at this workload's share of its traffic."""

    name: str
    site: int
    zone: int
    rate: float  # peak requests/s sent to this workload
    bytes_per_second: float  # peak bytes/s sent to this workload
    mean_factor: float  # average / peak (the diurnal shape's mean; 1 without one)

    @property
    def monthly_requests(self) -> float:
        return self.rate * self.mean_factor * SECONDS_PER_MONTH

    @property
    def monthly_bytes(self) -> float:
        return self.bytes_per_second * self.mean_factor * SECONDS_PER_MONTH


@dataclass(frozen=True)
class ProfileView:
    """One hardware profile: where it can run and how fast it serves."""

    index: int
    spec: HardwareProfile
    accelerator_model: str | None  # None: CPU-only execution
    arch: str | None  # only for 'cpu/<arch>' profiles
    service: ServiceTime | None

    @property
    def hardware(self) -> str:
        return self.spec.hardware


@dataclass(frozen=True)
class WorkloadView:
    workload: Workload
    sources: tuple[SourceDemand, ...]
    profiles: tuple[ProfileView, ...]
    targets: tuple[tuple[float, float], ...]  # (quantile, seconds), strictest quantile last
    # Read once per (workload, profile) by every stage — hundreds of thousands of
    # times in a large fleet — so resolved once here rather than through the
    # model's attribute chains (the model objects are never changed in place).
    name: str = field(init=False, compare=False, repr=False)
    is_job: bool = field(init=False, compare=False, repr=False)
    cpu: float = field(init=False, compare=False, repr=False)
    memory: float = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        spec = self.workload.spec
        object.__setattr__(self, "name", self.workload.name)
        object.__setattr__(self, "is_job", spec.class_ in JOB_CLASSES)
        object.__setattr__(self, "cpu", spec.resources.cpu)
        object.__setattr__(self, "memory", float(spec.resources.memory))

    @property
    def cls(self) -> str:
        return self.workload.spec.class_

    @property
    def accelerator(self) -> AcceleratorRequest | None:
        return self.workload.spec.resources.accelerator

    @property
    def peak_rate(self) -> float:
        return sum(s.rate for s in self.sources)

    @property
    def availability(self) -> float:
        return self.workload.spec.slo.availability or 0.0

    @property
    def min_replicas(self) -> int:
        return self.workload.spec.replicas.min

    @property
    def max_replicas(self) -> int:
        return self.workload.spec.replicas.max

    def duty(self, profile: ProfileView) -> float:
        """Fraction of the month the replicas run: a scheduled job's runs, else all of it."""
        schedule = self.workload.spec.schedule
        runtime = profile.spec.runtime
        if not self.is_job or schedule is None or runtime is None:
            return 1.0
        return schedule.duty(runtime)

    def accelerators_per_replica(self, profile: ProfileView) -> int:
        """Accelerators per replica: the request's count, else one on an accelerator profile."""
        if profile.accelerator_model is None:
            return 0
        request = self.accelerator
        return request.count if request is not None else 1

    @property
    def design_factor(self) -> float:
        """Peak demand is scaled up to the throughput SLO when that is higher."""
        throughput = self.workload.spec.slo.throughput
        peak = self.peak_rate
        if throughput is None or peak <= 0.0:
            return 1.0
        return max(1.0, throughput / peak)


@dataclass(frozen=True)
class _Where:
    position: SourcePosition | None
    workload: str


def _profile_view(index: int, spec: HardwareProfile, where: _Where) -> ProfileView:
    hardware = spec.hardware
    model: str | None = None
    arch: str | None = None
    if hardware == "cpu" or hardware.startswith("cpu/"):
        arch = hardware.partition("/")[2] or None
    else:
        model = hardware
    service = None
    if spec.service_time is not None:
        st = spec.service_time
        # The engine resolves the shape from the CV ("auto"), as the vectorised
        # quantiles of fleetplane.latency do; the declared shape is the simulator's.
        try:
            service = ServiceTime(st.mean, st.cv)
        except ValueError as error:
            raise ValidationError(
                Problem(
                    f"workload {where.workload!r}: {error}",
                    where.position,
                    f"spec.profiles[{index}].serviceTime",
                    hint="give a positive mean and a CV >= 0",
                )
            ) from None
    return ProfileView(index, spec, model, arch, service)


def view_workload(workload: Workload, fleet: Fleet, index: FleetIndex) -> WorkloadView:
    """Resolve a workload against the fleet (names were checked by the loader)."""
    zone_code = {z: i for i, z in enumerate(index.zones)}
    sources: list[SourceDemand] = []
    for demand in workload.spec.demand:
        ds = fleet.data_sources[demand.source]
        site = index.site_index[ds.spec.site]
        zone = ds.spec.residency_zone or index.sites[site].spec.residency_zone
        diurnal = ds.spec.diurnal
        sources.append(
            SourceDemand(
                name=ds.name,
                site=site,
                zone=zone_code[zone],
                rate=ds.spec.request_rate * demand.share,
                bytes_per_second=ds.spec.bytes_per_second * demand.share,
                mean_factor=sum(diurnal) / len(diurnal) if diurnal else 1.0,
            )
        )
    where = _Where(fleet.position_of("Workload", workload.name), workload.name)
    profiles = tuple(_profile_view(i, p, where) for i, p in enumerate(workload.spec.profiles))
    latency = workload.spec.slo.latency
    targets = tuple(latency.targets()) if latency is not None else ()
    return WorkloadView(workload, tuple(sources), profiles, targets)
