"""Counterfactuals for ``plan --explain``: the change that would make the runner-up site win.

The runner-up is the cheapest feasible site the workload does not use (by
the solver objective at full demand). The counterfactual is a price factor
on that site: found by bisection over whole re-plans of a what-if copy
(whatif.apply), so a stated counterfactual has been *checked* — applying it
and re-planning puts the workload on the runner-up.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fleetplane.model.fleet import Fleet
from fleetplane.model.policy import PlacementPolicy
from fleetplane.placement._internal.pipeline import PlanResult, run
from fleetplane.placement._internal.whatif import WhatIf, apply

STEPS = 8  # bisection steps: the factor is found to within 2⁻⁸ of the search range


@dataclass(frozen=True)
class Counterfactual:
    workload: str
    site: str  # the runner-up
    price_factor: float  # runner-up wins with its prices × this factor (or lower)

    def sentence(self) -> str:
        cut = (1.0 - self.price_factor) * 100.0
        return (
            f"{self.site} would win {self.workload} if its prices (compute, energy) were "
            f"×{self.price_factor:.3f} or lower ({cut:.1f}% cheaper)"
        )


def runner_up(fleet: Fleet, result: PlanResult, workload: str) -> str | None:
    """The unused site whose cheapest feasible candidate costs least per replica (+ model)."""
    cands = result.candidates.get(workload)
    allocs = result.allocations.get(workload)
    if cands is None or not allocs or not cands.size:
        return None
    names = sorted(fleet.sites)  # the engine indexes sites by name (fleet_index)
    used = {int(cands.site[a.candidate]) for a in allocs}
    per = cands.rates.compute + cands.model_cost
    for c in np.argsort(per, kind="stable").tolist():
        if int(cands.site[c]) not in used:
            return names[int(cands.site[c])]
    return None


def wins(
    fleet: Fleet, policy: PlacementPolicy | None, workload: str, site: str, factor: float
) -> bool:
    """Re-plan with ``site``'s prices × ``factor``: does ``workload`` run there?"""
    result = run(apply(fleet, WhatIf(prices={site: factor})), policy)
    placed = [w for w in result.placement.spec.workloads if w.workload == workload]
    return bool(placed) and any(a.site == site for a in placed[0].assignments)


def find(
    fleet: Fleet, policy: PlacementPolicy | None, workload: str, site: str
) -> Counterfactual | None:
    """The largest factor (≤ 1) found at which ``site`` wins; None if even free loses."""
    if not wins(fleet, policy, workload, site, 0.0):
        return None
    lo, hi = 0.0, 1.0  # wins at lo, (presumably) loses at hi
    for _ in range(STEPS):
        mid = (lo + hi) / 2
        if wins(fleet, policy, workload, site, mid):
            lo = mid
        else:
            hi = mid
    return Counterfactual(workload, site, lo)
