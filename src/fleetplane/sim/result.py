"""What a simulation reports (``fleetplane simulate -o json`` prints this model).

Times are in seconds, money in the fleet's currency, sizes in bytes, rates per
second. With several replications, percentiles are the mean over
replications and ``ci99`` holds each one's 99% confidence interval (Student t
over replications); counts are totals over all replications; utilisation, link
bytes and the time series are per replication (averaged).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from fleetplane.model.base import Spec

#: Predicted and simulated p99 further apart than this (relative) are flagged...
FLAG_THRESHOLD = 0.20
#: ...when at least this many requests were counted: below that, a simulated p99
#: rests on fewer than ten tail samples and differs from the truth by chance.
FLAG_MIN_REQUESTS = 1000


class Percentiles(Spec):
    mean: float | None = None
    p50: float | None = None
    p95: float | None = None
    p99: float | None = None
    p999: float | None = None


class Outcomes(Spec):
    """Every counted request has exactly one outcome: requests = the sum of the others."""

    requests: int = 0
    ok: int = Field(default=0, description="answered within the timeout")
    late: int = Field(default=0, description="answered after the client's timeout")
    lost: int = Field(default=0, description="sent to a site that was down or cut off")
    expired: int = Field(default=0, description="skipped by a server: the client had given up")
    dropped: int = Field(default=0, description="no reachable replica: rejected at once")

    @property
    def timed_out(self) -> int:
        return self.late + self.lost + self.expired


class SloTarget(Spec):
    quantile: float
    target: float
    attainment: float = Field(description="fraction of requests answered within target")
    met: bool


class Comparison(Spec):
    """The placement engine's predicted p99 against the simulated one.

    ``flagged`` when they differ by more than 20% of the prediction and at
    least 1,000 requests were counted.
    """

    predicted_p99: float | None
    simulated_p99: float | None
    relative_difference: float | None
    flagged: bool


class WorkloadCost(Spec):
    """Money per month (the placement's figures; egress from the simulated traffic)."""

    compute: float
    egress: float
    model_distribution: float
    energy: float
    total: float
    per_1k_requests: float | None = Field(
        alias="per1kRequests",
        description="per 1,000 requests answered in time, at the simulated rate",
    )
    predicted_per_1k_requests: float | None = Field(alias="predictedPer1kRequests")


class WorkloadResult(Spec):
    workload: str
    outcomes: Outcomes
    timed_out: int
    offered_rate: float = Field(description="requests per second sent")
    throughput: float = Field(description="requests per second answered within the timeout")
    latency: Percentiles
    wait: Percentiles = Field(description="queueing wait of answered requests")
    breakdown: dict[str, float] = Field(description="mean network, storage, wait and service")
    slo: list[SloTarget]
    slo_attainment: float | None = Field(
        description="fraction of requests within the tail (highest-quantile) target"
    )
    slo_met: bool
    comparison: Comparison
    cost: WorkloadCost
    egress_bytes: float
    ci99: dict[str, tuple[float, float]] | None = None
    cdf: list[tuple[float, float]] = Field(
        default_factory=list, description="(latency, fraction of requests at or below it)"
    )


class SiteResult(Spec):
    site: str
    servers: int
    requests: int
    utilisation: float


class LinkResult(Spec):
    link: str
    a: str
    b: str
    bytes_a_to_b: float
    bytes_b_to_a: float
    egress_cost: float


class WorkloadSeries(Spec):
    requests: list[float]
    timeouts: list[float]
    dropped: list[float]
    p50: list[float | None]
    p99: list[float | None]


class TimeSeries(Spec):
    bucket: float = Field(description="width of one bucket in seconds (60 unless over a day)")
    starts: list[float]
    workloads: dict[str, WorkloadSeries]
    site_utilisation: dict[str, list[float]]
    in_system: list[float] = Field(description="mean number of requests at queues")


class LittlesLaw(Spec):
    """L (time-averaged number at queues) against λW, per replication."""

    in_system: float
    arrival_rate: float
    time_in_system: float
    relative_error: float


class FaultWindow(Spec):
    type: str
    target: str
    start: float
    end: float


class RunInfo(Spec):
    replications: int
    simulated_requests: int = Field(description="every request generated, warm-up included")
    wall_seconds: float
    requests_per_second: float


class SimulationResult(Spec):
    fleet: str
    placement: str
    scenario: str
    seed: int
    routing: str
    duration: float
    warmup: float
    timeout: float
    demand_scale: float
    outcomes: Outcomes
    slo_attainment: float | None
    workloads: list[WorkloadResult]
    sites: list[SiteResult]
    links: list[LinkResult]
    series: TimeSeries
    littles_law: list[LittlesLaw]
    faults: list[FaultWindow]
    skipped: dict[str, str] = Field(
        default_factory=dict, description="request workloads not simulated, and why"
    )
    warnings: list[str] = Field(default_factory=list)
    run: RunInfo

    def workload(self, name: str) -> WorkloadResult:
        for result in self.workloads:
            if result.workload == name:
                return result
        raise KeyError(name)

    def to_document(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True)
