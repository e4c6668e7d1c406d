"""Counterfactuals for ``plan --explain``: the smallest change that would make another site win.

The runner-up is the cheapest feasible site the plan does not use, ranked by
the solver objective (``Scorer``) of serving the workload there: every
source the site may serve, with the replicas that take all of it, per unit
of demand served (so a site that can take only a few sources of a star is
ranked by what it costs for those). Candidates whose replicas do not fit in
an empty pool are not feasible and not ranked.

Three kinds of change are searched, each by bisection over *whole re-plans*
of a changed copy of the fleet:

* ``price`` — the runner-up's prices (compute, capex, energy) × a factor;
* ``egress`` — the egress price of the links into the runner-up × a factor
  (tried when those links have a price);
* ``latency`` — the workload's p99 budget raised, for a site whose first
  failed constraint is the latency SLO: a plan with a loose budget shows
  which such site the workload would pick, and the bisection finds the
  budget at which it does.

A counterfactual is returned only after its stated value — rounded the way
the sentence prints it — was applied and re-planned and the workload ran on
the site (``holds``), so every printed sentence is a checked fact.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from fleetplane.model.fleet import Fleet
from fleetplane.model.policy import PlacementPolicy
from fleetplane.model.units import format_duration
from fleetplane.placement._internal import feasibility
from fleetplane.placement._internal.capacity import CapacityState
from fleetplane.placement._internal.pipeline import PlanResult, _full_star_replicas, run
from fleetplane.placement._internal.scoring import build_scorer
from fleetplane.placement._internal.whatif import WhatIf, apply

# Bisection steps per search: a factor to within 2⁻⁶ ≈ 1.6% of its range, a
# budget to within 1/64 of the searched interval (then rounded up to 0.1 ms).
STEPS = 6
# The loose budget that reveals which latency-rejected site would win: this
# many times the furthest latency miss (the no-queue overshoot) over the target.
LOOSE = 2.0

Kind = Literal["price", "egress", "latency"]


@dataclass(frozen=True)
class SiteCost:
    site: str
    cost: float  # solver objective per unit of the workload's demand, money per month


@dataclass(frozen=True)
class Counterfactual:
    workload: str
    site: str
    kind: Kind
    value: float  # price/egress: factor on the site's prices; latency: the p99 budget (seconds)
    text: str

    def apply(self, fleet: Fleet) -> Fleet:
        """The fleet with the stated change made."""
        return _changed(fleet, self.workload, self.site, self.kind, self.value)


@dataclass(frozen=True)
class Planner:
    """How to re-plan: the same policy, solver and seed as the explained plan."""

    policy: PlacementPolicy | None = None
    solver: str = "greedy"
    seed: int = 0
    time_limit: float = 30.0

    def sites_of(self, fleet: Fleet, workload: str) -> list[str]:
        """Re-plan ``fleet``: the sites ``workload`` runs on (none when unplaceable)."""
        result = run(
            fleet, self.policy, solver=self.solver, seed=self.seed, time_limit=self.time_limit
        )
        placed = [w for w in result.placement.spec.workloads if w.workload == workload]
        return [a.site for a in placed[0].assignments] if placed else []

    def runs_on(self, fleet: Fleet, workload: str, site: str) -> bool:
        return site in self.sites_of(fleet, workload)


# -- ranking -------------------------------------------------------------------------------


def site_costs(result: PlanResult, workload: str) -> list[SiteCost]:
    """Feasible sites by their cheapest candidate's objective per unit of demand, cheapest first."""
    cands = result.candidates.get(workload)
    ctx = result.context
    if cands is None or ctx is None or not cands.size:
        return []
    view = cands.view
    scorer = build_scorer(cands, ctx.objective)
    idx = np.arange(cands.size)
    if view.is_job or not view.sources:
        replicas = np.full(cands.size, view.min_replicas, dtype=np.int64)
        shares = np.zeros((0, cands.size))
        served = np.ones(cands.size)
    else:
        replicas = _full_star_replicas([cands])[0].astype(np.int64)
        shares = cands.source_ok.astype(np.float64)
        served = scorer.source_weight @ shares
    empty = CapacityState(ctx.index)
    fits = np.array([empty.fit_count(int(cands.row[c]), cands.demand(c)) for c in idx.tolist()])
    ok = (replicas > 0) & (replicas <= view.max_replicas) & (replicas <= fits) & (served > 0)
    cost = scorer.objective(idx, replicas, shares, 1.0) / np.where(served > 0, served, 1.0)
    best: dict[str, float] = {}
    for c in np.flatnonzero(ok).tolist():
        name = ctx.index.sites[int(cands.site[c])].name
        if name not in best or cost[c] < best[name]:
            best[name] = float(cost[c])
    return sorted((SiteCost(s, v) for s, v in best.items()), key=lambda x: (x.cost, x.site))


def runner_up(result: PlanResult, workload: str) -> SiteCost | None:
    """The cheapest feasible site the plan does not use for ``workload``."""
    placed = [w for w in result.placement.spec.workloads if w.workload == workload]
    if not placed:
        return None
    used = {a.site for a in placed[0].assignments}
    return next((s for s in site_costs(result, workload) if s.site not in used), None)


# -- changes -------------------------------------------------------------------------------


def _inbound(fleet: Fleet, site: str) -> list[tuple[str, str, float]]:
    """(link, direction field, price) of every link direction carrying bytes into ``site``."""
    found = []
    for name in sorted(fleet.links):
        spec = fleet.links[name].spec
        if spec.b == site:
            found.append((name, "a_to_b", spec.egress_price.a_to_b))
        if spec.a == site:
            found.append((name, "b_to_a", spec.egress_price.b_to_a))
    return found


def _with_egress(fleet: Fleet, site: str, factor: float) -> Fleet:
    links = dict(fleet.links)
    for name, direction, price in _inbound(fleet, site):
        spec = links[name].spec
        egress = spec.egress_price.model_copy(update={direction: price * factor})
        links[name] = links[name].model_copy(
            update={"spec": spec.model_copy(update={"egress_price": egress})}
        )
    return replace(fleet, links=links)


def _with_p99(fleet: Fleet, workload: str, budget: float) -> Fleet:
    item = fleet.workloads[workload]
    slo = item.spec.slo
    assert slo.latency is not None  # only searched for workloads with a p99 target
    latency = slo.latency.model_copy(update={"p99": budget})
    spec = item.spec.model_copy(update={"slo": slo.model_copy(update={"latency": latency})})
    changed = item.model_copy(update={"spec": spec})
    return replace(fleet, workloads={**fleet.workloads, workload: changed})


def _changed(fleet: Fleet, workload: str, site: str, kind: Kind, value: float) -> Fleet:
    if kind == "price":
        return apply(fleet, WhatIf(prices={site: value}))
    if kind == "egress":
        return _with_egress(fleet, site, value)
    return _with_p99(fleet, workload, value)


def holds(fleet: Fleet, planner: Planner, cf: Counterfactual) -> bool:
    """Apply the counterfactual's change and re-plan: does the workload run on its site?"""
    return planner.runs_on(cf.apply(fleet), cf.workload, cf.site)


# -- searches ------------------------------------------------------------------------------


def _largest_winning_factor(wins: Callable[[float], bool]) -> float | None:
    """The largest factor in [0, 1) found to win, if even 0 wins; bisection over re-plans."""
    if not wins(0.0):
        return None
    lo, hi = 0.0, 1.0
    for _ in range(STEPS):
        mid = (lo + hi) / 2
        if wins(mid):
            lo = mid
        else:
            hi = mid
    return lo


def _round_down(value: float) -> float:
    """Two significant figures, never up: a stated lower price still wins (re-checked anyway)."""
    if value <= 0:
        return 0.0
    scale = 10.0 ** (math.floor(math.log10(value)) - 1)
    return float(math.floor(value / scale) * scale)


def _price_text(fleet: Fleet, workload: str, site: str, factor: float) -> tuple[float, str]:
    opex = fleet.sites[site].spec.cost.opex
    cut = (1.0 - factor) * 100.0
    if opex is not None and opex.cpu_hour > 0:
        price = _round_down(opex.cpu_hour * factor)
        factor = price / opex.cpu_hour
        return factor, (
            f"{site} would win {workload} if its compute price were ≤ "
            f"${price:.3g}/cpu-hour (now ${opex.cpu_hour:.3g}; all its prices "
            f"×{factor:.2f}, {(1.0 - factor) * 100.0:.0f}% cheaper)"
        )
    return factor, (
        f"{site} would win {workload} if its prices (compute, energy) were ×{factor:.2f} "
        f"or lower ({cut:.0f}% cheaper)"
    )


def _egress_text(fleet: Fleet, workload: str, site: str, factor: float) -> tuple[float, str]:
    dearest = max(p for _, _, p in _inbound(fleet, site))
    price = _round_down(dearest * factor)
    factor = price / dearest
    return factor, (
        f"{site} would win {workload} if its egress price were ≤ ${price:.3g}/GB "
        f"(now ${dearest:.3g}/GB on its dearest inbound link; inbound egress ×{factor:.2f})"
    )


def price_counterfactual(
    fleet: Fleet, planner: Planner, workload: str, site: str, kind: Kind = "price"
) -> Counterfactual | None:
    """The price (or inbound egress price) at which ``site`` wins ``workload``, checked."""
    if kind == "egress" and not any(p > 0 for _, _, p in _inbound(fleet, site)):
        return None

    def wins(factor: float) -> bool:
        return planner.runs_on(_changed(fleet, workload, site, kind, factor), workload, site)

    found = _largest_winning_factor(wins)
    if found is None:
        return None
    texts = _egress_text if kind == "egress" else _price_text
    factor, text = texts(fleet, workload, site, found)
    cf = Counterfactual(workload, site, kind, factor, text)
    return cf if factor == found or holds(fleet, planner, cf) else None


def latency_rejected(result: PlanResult, workload: str) -> dict[str, float]:
    """Sites whose first failed constraint is the latency SLO → their no-queue overshoot ratio."""
    cands = result.candidates.get(workload)
    ctx = result.context
    if cands is None or ctx is None or not cands.view.targets or not cands.view.sources:
        return {}
    diagnosis = feasibility.diagnose(ctx, cands.view)
    latency = feasibility.STAGE_INDEX["latency"]
    return {
        ctx.index.sites[s].name: m.ratio
        for s, m in diagnosis.by_site(ctx).items()
        if m.stage == latency and math.isfinite(m.ratio)
    }


def _round_up_ms(seconds: float) -> float:
    return math.ceil(seconds * 1e4 - 1e-6) / 1e4


def latency_counterfactual(
    fleet: Fleet, planner: Planner, result: PlanResult, workload: str
) -> Counterfactual | None:
    """The p99 budget at which a (cheaper) site now rejected by latency would win, checked."""
    item = fleet.workloads[workload]
    latency = item.spec.slo.latency
    target = latency.p99 if latency is not None else None
    rejected = latency_rejected(result, workload)
    if target is None or not rejected:
        return None
    loose = target * max(rejected.values()) * LOOSE
    chosen = planner.sites_of(_with_p99(fleet, workload, loose), workload)
    site = next((s for s in chosen if s in rejected), None)
    if site is None:
        return None
    lo, hi = target, loose  # loses at lo (the plan), wins at hi
    for _ in range(STEPS):
        mid = (lo + hi) / 2
        if planner.runs_on(_with_p99(fleet, workload, mid), workload, site):
            hi = mid
        else:
            lo = mid
    budget = _round_up_ms(hi)
    cf = Counterfactual(
        workload,
        site,
        "latency",
        budget,
        f"{site} would win {workload} if the p99 budget were ≥ {format_duration(budget)} "
        f"(now {format_duration(target)}; with that budget the plan prefers it)",
    )
    return cf if holds(fleet, planner, cf) else None


def find_all(
    fleet: Fleet, planner: Planner, result: PlanResult, workload: str
) -> tuple[SiteCost | None, list[Counterfactual]]:
    """The runner-up and every counterfactual that holds: its price, its egress, the budget."""
    found: list[Counterfactual] = []
    best = runner_up(result, workload)
    if best is not None:
        for kind in ("price", "egress"):
            cf = price_counterfactual(fleet, planner, workload, best.site, kind)
            if cf is not None:
                found.append(cf)
    cf = latency_counterfactual(fleet, planner, result, workload)
    if cf is not None:
        found.append(cf)
    return best, found
