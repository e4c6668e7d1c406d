"""Fleet-wide what-if: change the fleet on a copy, plan both, and diff the plans.

Changes are pure functions of a Fleet (the input is never modified):

* ``without_sites`` — the sites are drained and cordoned, so nothing runs
  there but data sources located there still send traffic (a site outage
  for compute, not for demand);
* ``scale_demand`` — every data source's peak request rate (and explicit byte
  rate) × F;
* ``prices`` — a site's prices × FACTOR: opex hourly prices, capex amount and
  overhead, energy price.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from fleetplane.errors import ValidationError, did_you_mean
from fleetplane.model.fleet import Fleet
from fleetplane.model.infrastructure import DataSource, Site
from fleetplane.model.placement import Placement, PlacementChange, WorkloadPlacement
from fleetplane.model.policy import PlacementPolicy
from fleetplane.placement._internal.diff import changes
from fleetplane.placement._internal.pipeline import PlanResult, run

# A workload whose predicted p99 uses more than this share of its SLO is "at risk".
AT_RISK = 0.9


@dataclass(frozen=True)
class WhatIf:
    without_sites: tuple[str, ...] = ()
    scale_demand: float = 1.0
    prices: dict[str, float] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.without_sites and self.scale_demand == 1.0 and not self.prices


@dataclass
class WhatIfResult:
    base: PlanResult
    changed: PlanResult
    changes: list[PlacementChange]
    cost_delta: float
    at_risk: list[str]  # workloads whose predicted p99 is near or over the SLO
    newly_unplaceable: list[str]


def _site(fleet: Fleet, name: str, flag: str) -> Site:
    site = fleet.sites.get(name)
    if site is None:
        hint = did_you_mean(name, list(fleet.sites))
        raise ValidationError(f"{flag} {name}: no such site" + (f"; {hint}" if hint else ""))
    return site


def _scaled_site(site: Site, factor: float) -> Site:
    cost = site.spec.cost
    opex = cost.opex
    if opex is not None:
        opex = opex.model_copy(
            update={
                "cpu_hour": opex.cpu_hour * factor,
                "memory_gib_hour": opex.memory_gib_hour * factor,
                "accelerator_hour": {k: v * factor for k, v in opex.accelerator_hour.items()},
            }
        )
    capex = cost.capex
    if capex is not None:
        capex = capex.model_copy(
            update={
                "amount": capex.amount * factor,
                "monthly_overhead": capex.monthly_overhead * factor,
            }
        )
    new_cost = cost.model_copy(
        update={"opex": opex, "capex": capex, "energy_price": cost.energy_price * factor}
    )
    return site.model_copy(update={"spec": site.spec.model_copy(update={"cost": new_cost})})


def _scaled_source(source: DataSource, factor: float) -> DataSource:
    spec = source.spec
    update: dict[str, float] = {"request_rate": spec.request_rate * factor}
    if spec.byte_rate is not None:
        update["byte_rate"] = spec.byte_rate * factor
    return source.model_copy(update={"spec": spec.model_copy(update=update)})


def apply(fleet: Fleet, change: WhatIf) -> Fleet:
    """A copy of ``fleet`` with ``change`` applied."""
    if change.scale_demand <= 0:
        raise ValidationError(f"--scale-demand must be > 0, got {change.scale_demand}")
    sites = dict(fleet.sites)
    for name in change.without_sites:
        site = _site(fleet, name, "--without-site")
        spec = site.spec.model_copy(update={"cordoned": True, "draining": True})
        sites[name] = site.model_copy(update={"spec": spec})
    for name, factor in change.prices.items():
        if factor < 0:
            raise ValidationError(f"--price {name}={factor}: the factor must be ≥ 0")
        sites[name] = _scaled_site(sites.get(name) or _site(fleet, name, "--price"), factor)
    sources = fleet.data_sources
    if change.scale_demand != 1.0:
        sources = {n: _scaled_source(s, change.scale_demand) for n, s in sources.items()}
    return replace(fleet, sites=sites, data_sources=sources)


def at_risk(item: WorkloadPlacement) -> bool:
    p99, slo = item.predicted.p99, item.slo_p99
    return p99 is not None and slo is not None and p99 > AT_RISK * slo


def _names_unplaced(placement: Placement) -> set[str]:
    return {u.workload for u in placement.spec.unplaceable}


def compare(
    fleet: Fleet,
    change: WhatIf,
    policy: PlacementPolicy | None = None,
    *,
    solver: str = "greedy",
    seed: int = 0,
    time_limit: float = 30.0,
    base: PlanResult | None = None,
) -> WhatIfResult:
    """Plan the fleet as it is and with ``change``; what moves, what it costs, what is at risk."""
    if base is None:
        base = run(fleet, policy, solver=solver, seed=seed, time_limit=time_limit)
    changed = run(apply(fleet, change), policy, solver=solver, seed=seed, time_limit=time_limit)
    found = changes(base.placement, changed.placement)
    delta = changed.placement.spec.cost.total - base.placement.spec.cost.total
    risky = sorted(w.workload for w in changed.placement.spec.workloads if at_risk(w))
    lost = sorted(_names_unplaced(changed.placement) - _names_unplaced(base.placement))
    return WhatIfResult(base, changed, found, delta, risky, lost)
