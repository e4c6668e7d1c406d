"""Move-aware re-planning: the current plan as a pattern per workload, and what a move costs.

``plan(fleet, current=placement)`` maps every current assignment onto the
candidate table. A workload whose assignments all map is *kept* for free;
any other pattern moves it and pays the policy's ``moveCost`` once:
``disruption`` per replica started on a (pool, profile) where it did not run
before, plus — with ``includeTransfer`` — one model transfer to every site it
did not run on (model size × the registry price the engine already uses for
model distribution). The objective is money per month, so the one-off cost
enters it spread over the policy's ``moveCost.paybackPeriod`` (cost ÷ period
in months): a move happens when its saving over that period beats its cost
(one month by default: the saving per month must beat the cost once).

Operator controls:

* **pinned** (``pinned: true`` on an Assignment, or the annotation
  ``fleetplane.io/pinned: "true"`` on a Workload): the workload keeps its
  current assignments unless a site of them is draining;
* **cordoned** site: no new replicas there, existing ones may stay;
* **draining** site: everything on it moves (such moves are *forced* and do
  not count against ``moveBudget``).

A workload whose current assignments no longer map (site draining, pool gone,
a hard constraint now fails) is forced to move.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from fleetplane.model.fleet import Fleet
from fleetplane.model.placement import Placement, WorkloadPlacement
from fleetplane.placement._internal.candidates import Allocation, Candidates
from fleetplane.placement._internal.cost import DAYS_PER_MONTH
from fleetplane.placement._internal.patterns import Pattern, pattern_of
from fleetplane.placement._internal.scoring import Scorer
from fleetplane.placement._internal.solve import needs_spread

PINNED = "fleetplane.io/pinned"
CORDONED = "fleetplane.io/cordoned"
DRAINING = "fleetplane.io/draining"


def _truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("true", "1", "yes")


def operator_controls(fleet: Fleet) -> Fleet:
    """The fleet with the cordon/drain annotations folded into the Site spec fields."""
    sites = dict(fleet.sites)
    changed = False
    for name, site in fleet.sites.items():
        notes = site.metadata.annotations or {}
        cordoned = site.spec.cordoned or _truthy(notes.get(CORDONED))
        draining = site.spec.draining or _truthy(notes.get(DRAINING))
        if (cordoned, draining) != (site.spec.cordoned, site.spec.draining):
            spec = site.spec.model_copy(update={"cordoned": cordoned, "draining": draining})
            sites[name] = site.model_copy(update={"spec": spec})
            changed = True
    return replace(fleet, sites=sites) if changed else fleet


def open_cordoned(fleet: Fleet) -> tuple[Fleet, set[str]]:
    """The fleet with cordoned (not draining) sites opened, and their names.

    Re-planning needs their candidates to keep what already runs there; the
    exact solver then allows only current assignments on them.
    """
    cordoned = {n for n, s in fleet.sites.items() if s.spec.cordoned and not s.spec.draining}
    if not cordoned:
        return fleet, cordoned
    sites = dict(fleet.sites)
    for name in cordoned:
        site = sites[name]
        sites[name] = site.model_copy(
            update={"spec": site.spec.model_copy(update={"cordoned": False})}
        )
    return replace(fleet, sites=sites), cordoned


def workload_pinned(fleet: Fleet, placed: WorkloadPlacement) -> bool:
    workload = fleet.workloads.get(placed.workload)
    notes = (workload.metadata.annotations or {}) if workload is not None else {}
    return _truthy(notes.get(PINNED)) or any(a.pinned for a in placed.assignments)


@dataclass
class MoveTerms:
    """What the exact solver needs to re-plan from a current plan."""

    current: dict[str, Pattern]  # workloads whose current assignments still map
    forced: set[str]  # had a placement that no longer maps: they must move, outside the budget
    pinned: set[str]
    no_new_sites: set[int]  # site indices where only current assignments may stay
    disruption: float
    include_transfer: bool
    budget: int | None
    broad: bool  # offer every pattern (exact) or only current and greedy's (greedy)
    previous: dict[str, WorkloadPlacement] = field(default_factory=dict)
    payback_months: float = 1.0  # moveCost.paybackPeriod in months

    def amortised(self, cands: Candidates, pattern: Pattern) -> float:
        """The move cost as the objective weighs it: money per month over the payback period."""
        return self.move_cost(cands, pattern) / self.payback_months

    def move_cost(self, cands: Candidates, pattern: Pattern) -> float:
        """One-off cost of going from the current placement to ``pattern`` (0 when kept)."""
        name = cands.view.name
        now = self.current.get(name)
        before = self.previous.get(name)
        if before is None and now is None:
            return 0.0  # a new workload: placing it is not a move
        had: dict[tuple[int, int], int] = {}
        sites: set[int] = set()
        if now is not None:
            for a in now.allocations:
                key = (int(cands.row[a.candidate]), int(cands.profile[a.candidate]))
                had[key] = had.get(key, 0) + a.replicas
                sites.add(int(cands.site[a.candidate]))
        cost = 0.0
        for a in pattern.allocations:
            key = (int(cands.row[a.candidate]), int(cands.profile[a.candidate]))
            cost += max(a.replicas - had.get(key, 0), 0) * self.disruption
            site = int(cands.site[a.candidate])
            if self.include_transfer and site not in sites:
                cost += transfer(cands, a.candidate)
        return cost

    def allowed(self, cands: Candidates, pattern: Pattern) -> bool:
        """False when ``pattern`` starts replicas on a cordoned site (its current ones may stay)."""
        if not self.no_new_sites:
            return True
        now = self.current.get(cands.view.name)
        keep = now.key(cands) if now is not None else frozenset()
        for a in pattern.allocations:
            c = a.candidate
            place = (int(cands.row[c]), int(cands.profile[c]))
            if int(cands.site[c]) in self.no_new_sites and place not in keep:
                return False
        return True


def transfer(cands: Candidates, c: int) -> float:
    """One model download to candidate ``c``'s site, priced as model distribution prices it."""
    model = cands.view.workload.spec.model
    if model is None or model.updates_per_day <= 0:
        return 0.0
    return float(cands.model_cost[c]) / (model.updates_per_day * DAYS_PER_MONTH)


def current_pattern(
    cands: Candidates,
    scorer: Scorer,
    placed: WorkloadPlacement,
    site_names: list[str],
    pools: list[str],
) -> Pattern | None:
    """The current assignments as allocations on this table, or None if any no longer maps."""
    view = cands.view
    source_index = {s.name: i for i, s in enumerate(view.sources)}
    allocs: list[Allocation] = []
    for a in placed.assignments:
        match = [
            c
            for c in range(cands.size)
            if site_names[int(cands.site[c])] == a.site
            and pools[int(cands.row[c])] == a.pool
            and view.profiles[int(cands.profile[c])].hardware == a.profile
        ]
        if not match:
            return None
        c = match[0]
        # replicas.min/max may have changed since: an assignment outside them is no longer
        # a plan to keep (the verifier would refuse it), so the workload must be re-sized.
        low = 1 if view.is_job and not needs_spread(cands) else view.min_replicas
        if not low <= a.replicas <= view.max_replicas:
            return None
        shares = [0.0] * len(view.sources)
        for src, share in a.sources.items():
            if src not in source_index:
                return None
            shares[source_index[src]] = share
        if view.is_job or not view.sources:
            frac = shares[0] if shares else a.replicas / max(view.min_replicas, 1)
            allocs.append(Allocation(c, a.replicas, tuple(shares), tuple(shares), (), frac))
            continue
        if any(share > 0 and not cands.source_ok[s, c] for s, share in enumerate(shares)):
            return None
        design = tuple(1.0 if share > 0 else 0.0 for share in shares)
        weight = float(scorer.source_weight @ shares) if shares else 0.0
        allocs.append(Allocation(c, a.replicas, tuple(shares), design, (), weight))
    if not view.is_job and view.sources:
        served = [sum(a.shares[s] for a in allocs) for s in range(len(view.sources))]
        if any(abs(x - 1.0) > 1e-6 for x in served):
            return None
    return pattern_of(scorer, allocs, "current")


def previous_by_name(current: Placement) -> dict[str, WorkloadPlacement]:
    return {w.workload: w for w in current.spec.workloads}
