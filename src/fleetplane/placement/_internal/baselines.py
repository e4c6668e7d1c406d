"""Baselines: how simpler schedulers would place the same fleet, priced by the same engine.

Each baseline is the engine run on a changed copy of the fleet and policy, so
capacity, residency, hardware and the policy's ``require`` rules still hold
(baselines never break a hard constraint) but latency SLOs are *not* enforced:
every latency target is relaxed to an hour and replicas are sized for
throughput. Predicted SLO misses are then counted with the engine's own
latency prediction against the original p99 targets.

* ``cloud-only`` — only regional and HPC sites (edge sites cordoned);
* ``edge-ward`` — iFogSim's edge-first policy: the lowest tier that fits
  (edge, then regional, then HPC), moving up only when it is full; cost only
  breaks ties within a tier;
* ``nearest`` — latency-greedy: the lowest estimated latency, whatever it costs.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from fleetplane.model.fleet import Fleet
from fleetplane.model.placement import Placement
from fleetplane.model.policy import Objective, PlacementPolicy, Rule
from fleetplane.model.workload import Workload
from fleetplane.placement._internal.pipeline import PlanResult, choose_policy, run

RELAXED = 3600.0  # seconds: a latency target no placement misses
TIER_PENALTY = 1e6  # money per month per tier step above the edge: tiers dominate cost
BASELINES = ("cloud-only", "edge-ward", "nearest")


@dataclass(frozen=True)
class BaselineResult:
    name: str
    placement: Placement
    cost: float
    slo_misses: int
    unplaced: int


def _relaxed(workload: Workload) -> Workload:
    slo = workload.spec.slo
    if slo.latency is None:
        return workload
    loose = slo.latency.model_copy(
        update={k: RELAXED for k, v in slo.latency.model_dump().items() if v is not None}
    )
    spec = workload.spec.model_copy(update={"slo": slo.model_copy(update={"latency": loose})})
    return workload.model_copy(update={"spec": spec})


def _policy(base: PlacementPolicy, name: str) -> PlacementPolicy:
    rules = [r for r in base.spec.rules if r.require is not None]
    objective = base.spec.objective
    if name == "edge-ward":
        rules += [
            Rule(
                name="edge-ward-not-regional",
                when="true",
                prefer="site.tier == 'edge'",
                weight=TIER_PENALTY,
            ),
            Rule(
                name="edge-ward-not-hpc",
                when="true",
                prefer="site.tier != 'hpc'",
                weight=TIER_PENALTY,
            ),
        ]
    if name == "nearest":
        objective = Objective(cost=1e-6, energy=0.0, latency=1e9)
    spec = base.spec.model_copy(update={"rules": rules, "objective": objective})
    return base.model_copy(update={"spec": spec})


def _fleet(fleet: Fleet, name: str) -> Fleet:
    workloads = {n: _relaxed(w) for n, w in fleet.workloads.items()}
    sites = fleet.sites
    if name == "cloud-only":
        sites = {
            n: s
            if s.spec.tier in ("regional", "hpc")
            else s.model_copy(update={"spec": s.spec.model_copy(update={"cordoned": True})})
            for n, s in fleet.sites.items()
        }
    return replace(fleet, workloads=workloads, sites=sites)


def slo_misses(fleet: Fleet, placement: Placement) -> int:
    """Placed workloads whose predicted p99 exceeds the fleet's own p99 target."""
    misses = 0
    for item in placement.spec.workloads:
        workload = fleet.workloads.get(item.workload)
        latency = workload.spec.slo.latency if workload is not None else None
        target = latency.p99 if latency is not None else None
        if target is not None and item.predicted.p99 is not None and item.predicted.p99 > target:
            misses += 1
    return misses


def summarize(fleet: Fleet, name: str, result: PlanResult) -> BaselineResult:
    placement = result.placement
    return BaselineResult(
        name=name,
        placement=placement,
        cost=placement.spec.cost.total,
        slo_misses=slo_misses(fleet, placement),
        unplaced=len(placement.spec.unplaceable),
    )


def run_baseline(
    fleet: Fleet, name: str, policy: PlacementPolicy | None = None, seed: int = 0
) -> BaselineResult:
    chosen = _policy(choose_policy(fleet, policy), name)
    return summarize(fleet, name, run(_fleet(fleet, name), chosen, seed=seed))


def compare(
    fleet: Fleet, policy: PlacementPolicy | None = None, seed: int = 0
) -> list[BaselineResult]:
    return [run_baseline(fleet, name, policy, seed) for name in BASELINES]
