"""Combine replications into a :class:`SimulationResult` (conventions in ``result.py``)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import stats

from fleetplane.model.units import HOURS_PER_MONTH
from fleetplane.model.workload import PERCENTILES
from fleetplane.sim.build import SimModel
from fleetplane.sim.engine import Prepared
from fleetplane.sim.metrics import CDF_LEVELS, LEVELS, RunMetrics, WorkloadRun
from fleetplane.sim.result import (
    FLAG_MIN_REQUESTS,
    FLAG_THRESHOLD,
    Comparison,
    FaultWindow,
    LinkResult,
    LittlesLaw,
    Outcomes,
    Percentiles,
    RunInfo,
    SimulationResult,
    SiteResult,
    SloTarget,
    TimeSeries,
    WorkloadCost,
    WorkloadResult,
    WorkloadSeries,
)

FloatArray = npt.NDArray[np.float64]
SECONDS_PER_MONTH = HOURS_PER_MONTH * 3600.0
_OUTCOME_NAMES = ("ok", "late", "lost", "expired", "dropped")


def aggregate(
    prep: Prepared, runs: Sequence[RunMetrics], seed: int, wall_seconds: float
) -> SimulationResult:
    model = prep.model
    spec = model.scenario.spec
    window = spec.duration - spec.warmup
    workloads = [
        _workload(model, w, [run.workloads[w] for run in runs], window)
        for w in range(len(model.workloads))
    ]
    total = Outcomes()
    for result in workloads:
        for name in ("requests", *_OUTCOME_NAMES):
            setattr(total, name, getattr(total, name) + getattr(result.outcomes, name))
    attained = [
        (w.slo_attainment, w.outcomes.requests) for w in workloads if w.slo_attainment is not None
    ]
    weight = sum(n for _, n in attained)
    simulated = sum(run.simulated for run in runs)
    return SimulationResult(
        fleet=model.fleet.name,
        placement=model.placement.name,
        scenario=model.scenario.name,
        seed=seed,
        routing=spec.routing,
        duration=spec.duration,
        warmup=spec.warmup,
        timeout=spec.timeout,
        demand_scale=spec.demand_scale,
        outcomes=total,
        slo_attainment=sum(a * n for a, n in attained) / weight if weight else None,
        workloads=workloads,
        sites=_sites(model, runs),
        links=_links(model, runs),
        series=_series(model, runs),
        littles_law=[
            LittlesLaw(
                in_system=run.little.in_system,
                arrival_rate=run.little.arrival_rate,
                time_in_system=run.little.time_in_system,
                relative_error=run.little.relative_error,
            )
            for run in runs
        ],
        faults=[
            FaultWindow(type=w.kind, target=w.target, start=w.start, end=w.end)
            for w in prep.faults.windows
        ],
        skipped=dict(model.skipped),
        warnings=list(model.warnings),
        run=RunInfo(
            replications=len(runs),
            simulated_requests=simulated,
            wall_seconds=wall_seconds,
            requests_per_second=simulated / wall_seconds if wall_seconds > 0 else 0.0,
        ),
    )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def nanmean(arrays: Sequence[FloatArray]) -> FloatArray:
    """Element-wise mean over replications, ignoring NaN (a bucket without requests)."""
    with warnings.catch_warnings():
        # All-NaN positions stay NaN; numpy warns about them, we expect them.
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nanmean(np.stack(arrays), axis=0), dtype=np.float64)


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def confidence_interval(values: Sequence[float], level: float = 0.99) -> tuple[float, float]:
    """Student-t interval for the mean of independent replications."""
    data = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    if data.shape[0] < 2:
        centre = float(data.mean()) if data.shape[0] else math.nan
        return centre, centre
    half = float(stats.t.ppf(0.5 + level / 2, data.shape[0] - 1)) * float(
        data.std(ddof=1) / math.sqrt(data.shape[0])
    )
    return float(data.mean() - half), float(data.mean() + half)


def _percentiles(mean: float, quantiles: FloatArray) -> Percentiles:
    values = dict(zip(("p50", "p95", "p99", "p999"), quantiles.tolist(), strict=True))
    return Percentiles(mean=_finite(mean), **{k: _finite(v) for k, v in values.items()})


def _workload(model: SimModel, w: int, runs: list[WorkloadRun], window: float) -> WorkloadResult:
    sim_workload = model.workloads[w]
    planned = sim_workload.planned
    outcomes = Outcomes(
        **{name: sum(r.counts[name] for r in runs) for name in ("requests", *_OUTCOME_NAMES)}
    )
    latency = nanmean([r.latency for r in runs])
    wait = nanmean([r.wait for r in runs])
    latency_mean = _mean([r.latency_mean for r in runs])
    wait_mean = _mean([r.wait_mean for r in runs])
    seconds = window * len(runs)
    throughput = outcomes.ok / seconds
    targets = sim_workload.workload.spec.slo.latency
    slo = []
    for quantile, target in targets.targets() if targets else []:
        within = sum(r.within[target] * r.counts["requests"] for r in runs)
        attainment = within / outcomes.requests if outcomes.requests else 0.0
        slo.append(
            SloTarget(
                quantile=quantile,
                target=target,
                attainment=attainment,
                met=outcomes.requests > 0 and attainment >= quantile,
            )
        )
    simulated_p99 = _finite(float(latency[LEVELS.index(0.99)]))
    predicted = planned.predicted.p99
    difference = (
        abs(simulated_p99 - predicted) / predicted
        if predicted and simulated_p99 is not None
        else None
    )
    egress_month = sum(r.egress_cost for r in runs) / seconds * SECONDS_PER_MONTH
    cost = planned.cost
    monthly = cost.compute + cost.model_distribution + cost.energy + egress_month
    ci99 = None
    if len(runs) > 1:
        ci99 = {
            "latencyMean": confidence_interval([r.latency_mean for r in runs]),
            "waitMean": confidence_interval([r.wait_mean for r in runs]),
        }
        for i, level in enumerate(LEVELS):
            name = _level_name(level)
            ci99[f"latency{name}"] = confidence_interval([float(r.latency[i]) for r in runs])
            ci99[f"wait{name}"] = confidence_interval([float(r.wait[i]) for r in runs])
    cdf = nanmean([r.cdf for r in runs])
    return WorkloadResult(
        workload=sim_workload.name,
        outcomes=outcomes,
        timed_out=outcomes.timed_out,
        offered_rate=outcomes.requests / seconds,
        throughput=throughput,
        latency=_percentiles(latency_mean, latency),
        wait=_percentiles(wait_mean, wait),
        breakdown={
            part: _mean([r.breakdown[part] for r in runs])
            for part in ("network", "storage", "wait", "service")
        },
        slo=slo,
        slo_attainment=slo[-1].attainment if slo else None,
        slo_met=all(t.met for t in slo),
        comparison=Comparison(
            predicted_p99=predicted,
            simulated_p99=simulated_p99,
            relative_difference=difference,
            flagged=difference is not None
            and difference > FLAG_THRESHOLD
            and outcomes.requests >= FLAG_MIN_REQUESTS,
        ),
        cost=WorkloadCost(
            compute=cost.compute,
            egress=egress_month,
            model_distribution=cost.model_distribution,
            energy=cost.energy,
            total=monthly,
            per_1k_requests=(monthly / (throughput * SECONDS_PER_MONTH) * 1000.0)
            if throughput > 0
            else None,
            predicted_per_1k_requests=planned.cost_per_1k_requests,
        ),
        egress_bytes=sum(r.egress_bytes for r in runs) / len(runs),
        ci99=ci99,
        cdf=[
            (float(x), float(q))
            for x, q in zip(cdf, CDF_LEVELS, strict=True)
            if math.isfinite(float(x))
        ],
    )


def _level_name(level: float) -> str:
    """0.99 → 'P99', 0.999 → 'P999' (the names Workload SLOs use)."""
    for name, value in PERCENTILES.items():
        if value == level:
            return name.upper()
    return f"Q{level:g}"


def _sites(model: SimModel, runs: Sequence[RunMetrics]) -> list[SiteResult]:
    first = runs[0]
    utilisation = np.mean(np.stack([r.site_utilisation for r in runs]), axis=0)
    requests = np.sum(np.stack([r.site_requests for r in runs]), axis=0)
    return [
        SiteResult(
            site=name,
            servers=int(first.site_servers[i]),
            requests=int(requests[i]),
            utilisation=float(utilisation[i]),
        )
        for i, name in enumerate(model.site_names)
        if first.site_servers[i] > 0
    ]


def _links(model: SimModel, runs: Sequence[RunMetrics]) -> list[LinkResult]:
    per_run = np.mean(np.stack([r.link_bytes for r in runs]), axis=0)
    out = []
    for i, link in enumerate(model.fleet.links.values()):
        forward, backward = float(per_run[i, 0]), float(per_run[i, 1])
        if forward == 0.0 and backward == 0.0:
            continue
        price = link.spec.egress_price
        out.append(
            LinkResult(
                link=link.name,
                a=link.spec.a,
                b=link.spec.b,
                bytes_a_to_b=forward,
                bytes_b_to_a=backward,
                egress_cost=(forward * price.a_to_b + backward * price.b_to_a) / 1e9,
            )
        )
    return out


def _optional(values: FloatArray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values]


def _series(model: SimModel, runs: Sequence[RunMetrics]) -> TimeSeries:
    first = runs[0].series

    def mean(attr: str) -> FloatArray:
        return nanmean([getattr(r.series, attr) for r in runs])

    requests, timeouts, dropped = mean("requests"), mean("timeouts"), mean("dropped")
    p50, p99 = mean("p50"), mean("p99")
    used = np.flatnonzero(runs[0].site_servers > 0)
    utilisation = mean("utilisation")
    return TimeSeries(
        bucket=first.bucket,
        starts=first.starts.tolist(),
        workloads={
            w.name: WorkloadSeries(
                requests=requests[i].tolist(),
                timeouts=timeouts[i].tolist(),
                dropped=dropped[i].tolist(),
                p50=_optional(p50[i]),
                p99=_optional(p99[i]),
            )
            for i, w in enumerate(model.workloads)
        },
        site_utilisation={
            model.site_names[s]: utilisation[row].tolist() for row, s in enumerate(used)
        },
        in_system=mean("in_system").tolist(),
    )
