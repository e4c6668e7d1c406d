"""The infrastructure kinds: Site, Link, NodeImage, DataSource."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field, PositiveInt, model_validator

from fleetplane.model.base import EmptyStatus, Resource, Spec
from fleetplane.model.units import (
    Bandwidth,
    ByteRate,
    Cpu,
    Duration,
    EnergyPrice,
    Fraction,
    HourlyPrice,
    Money,
    Power,
    PricePerGB,
    Rate,
    Size,
)

Tier = Literal["edge", "regional", "hpc"]
Arch = Literal["amd64", "arm64"]
AcceleratorKind = Literal["gpu", "npu", "fpga", "tpu"]


class Accelerator(Spec):
    """Accelerators on each node of a pool."""

    kind: AcceleratorKind
    model: str = Field(description="e.g. a100-80g, l4, orin-agx, hailo-8, alveo-u50")
    count: PositiveInt = 1
    memory: Size = 0
    watts: Power = Field(default=0.0, description="power draw of one accelerator under load")


class StorageMedia(Spec):
    media: Literal["nvme", "ssd", "hdd", "network", "object", "ram"]
    read_latency: Duration
    capacity: Size | None = None


class NodePool(Spec):
    name: str
    count: PositiveInt
    cpu: Cpu = Field(description="cores per node")
    memory: Size = Field(description="memory per node")
    arch: Arch = "amd64"
    node_image: str
    accelerators: list[Accelerator] = Field(default_factory=list)
    storage: list[StorageMedia] = Field(default_factory=list)
    watts: Power = Field(default=0.0, description="power draw of one node without accelerators")

    @model_validator(mode="after")
    def _positive_capacity(self) -> NodePool:
        if self.cpu <= 0:
            raise ValueError(f"node pool {self.name!r}: cpu must be > 0 (cores per node)")
        if self.memory <= 0:
            raise ValueError(f"node pool {self.name!r}: memory must be > 0 (e.g. '16Gi')")
        return self


class OpexPricing(Spec):
    """Pay-as-you-go prices per hour of allocated resource."""

    cpu_hour: HourlyPrice = 0.0
    memory_gib_hour: HourlyPrice = 0.0
    accelerator_hour: dict[str, HourlyPrice] = Field(
        default_factory=dict, description="per accelerator model"
    )


class CapexPricing(Spec):
    """Owned hardware: the purchase price spread over its useful life.

    The engine turns this into an hourly rate per unit of capacity, so a
    half-used on-prem cluster costs half as much per workload as it would
    if it were full — which is why filling owned capacity first pays.
    """

    amount: Money
    amortisation_months: PositiveInt = 36
    # Running costs that are not energy (support, rack space), per month.
    monthly_overhead: Money = 0.0


class CostModel(Spec):
    currency: str = "USD"
    opex: OpexPricing | None = None
    capex: CapexPricing | None = None
    energy_price: EnergyPrice = 0.0

    @model_validator(mode="after")
    def _one_pricing(self) -> CostModel:
        if self.opex is None and self.capex is None:
            raise ValueError("give either 'opex' (hourly prices) or 'capex' (amortised purchase)")
        return self


class Location(Spec):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    city: str | None = None


class SiteSpec(Spec):
    tier: Tier
    region: str
    residency_zone: str
    location: Location | None = None
    node_pools: list[NodePool] = Field(min_length=1)
    power_budget: Power | None = None
    cost: CostModel
    # Operator controls (also settable with annotations by the control plane).
    cordoned: bool = False
    draining: bool = False

    @model_validator(mode="after")
    def _unique_pools(self) -> SiteSpec:
        seen: set[str] = set()
        for pool in self.node_pools:
            if pool.name in seen:
                raise ValueError(f"node pool {pool.name!r} is defined twice")
            seen.add(pool.name)
        return self


class WorkloadState(Spec):
    workload: str
    replicas: int = 0
    ready: int = 0
    state: str = "Unknown"
    message: str | None = None


class SiteStatus(Spec):
    """Written by the site's agent (and the reachability controller)."""

    heartbeat: datetime | None = None
    reachability: Literal["Reachable", "Unreachable", "Lost", "Unknown"] = "Unknown"
    applied_revision: int | None = None
    workloads: list[WorkloadState] = Field(default_factory=list)
    hardware: dict[str, object] = Field(default_factory=dict)
    agent_version: str | None = None
    certificate_expiry: datetime | None = None


class Site(Resource[SiteSpec, SiteStatus]):
    KIND: ClassVar[str] = "Site"
    PLURAL: ClassVar[str] = "sites"
    kind: str = "Site"


class LatencyDistribution(Spec):
    """One-way latency; the engine fits a lognormal to the two percentiles."""

    p50: Duration
    p99: Duration

    @model_validator(mode="after")
    def _ordered(self) -> LatencyDistribution:
        if self.p50 <= 0:
            raise ValueError("p50 must be > 0")
        if self.p99 < self.p50:
            raise ValueError("p99 must be >= p50")
        return self


class EgressPrice(Spec):
    a_to_b: PricePerGB = 0.0
    b_to_a: PricePerGB = 0.0


class LinkSpec(Spec):
    a: str = Field(description="site name at one end")
    b: str = Field(description="site name at the other end")
    latency: LatencyDistribution
    bandwidth: Bandwidth
    loss: Fraction = 0.0
    egress_price: EgressPrice = Field(default_factory=EgressPrice)

    @model_validator(mode="after")
    def _distinct_ends(self) -> LinkSpec:
        if self.a == self.b:
            raise ValueError(f"a link joins two different sites; both ends are {self.a!r}")
        if self.bandwidth <= 0:
            raise ValueError("bandwidth must be > 0 (e.g. '1Gbps')")
        return self


class Link(Resource[LinkSpec, EmptyStatus]):
    KIND: ClassVar[str] = "Link"
    PLURAL: ClassVar[str] = "links"
    kind: str = "Link"


class ContainerRuntime(Spec):
    name: str
    version: str


class NodeImageSpec(Spec):
    os: str
    container_runtime: ContainerRuntime
    drivers: dict[str, str] = Field(
        default_factory=dict, description="driver/library name → version, e.g. cuda: '12.2'"
    )
    arches: list[Arch] = Field(min_length=1)
    accelerators: list[str] = Field(
        default_factory=list, description="accelerator models this image supports"
    )


class NodeImage(Resource[NodeImageSpec, EmptyStatus]):
    KIND: ClassVar[str] = "NodeImage"
    PLURAL: ClassVar[str] = "nodeimages"
    kind: str = "NodeImage"


class DataSourceSpec(Spec):
    site: str
    request_rate: Rate = Field(description="peak request rate")
    request_size: Size = Field(default=0, description="bytes sent per request")
    byte_rate: ByteRate | None = Field(
        default=None, description="continuous byte rate (streams); default rate × size"
    )
    residency_zone: str | None = Field(
        default=None, description="zone the data must stay in; default: the site's zone"
    )
    diurnal: list[float] | None = Field(
        default=None, description="24 hourly multipliers of the peak rate, each in [0, 1]"
    )

    @model_validator(mode="after")
    def _diurnal_shape(self) -> DataSourceSpec:
        if self.diurnal is not None:
            if len(self.diurnal) != 24:
                raise ValueError(f"diurnal needs 24 hourly values, got {len(self.diurnal)}")
            if any(not 0.0 <= v <= 1.0 for v in self.diurnal):
                raise ValueError("diurnal values are fractions of the peak rate, each in [0, 1]")
        return self

    @property
    def bytes_per_second(self) -> float:
        if self.byte_rate is not None:
            return self.byte_rate
        return self.request_rate * self.request_size


class DataSource(Resource[DataSourceSpec, EmptyStatus]):
    KIND: ClassVar[str] = "DataSource"
    PLURAL: ClassVar[str] = "datasources"
    kind: str = "DataSource"
