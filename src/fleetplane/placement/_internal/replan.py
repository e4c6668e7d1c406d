"""Glue between the pipeline and move-aware re-planning (moves.py does the pricing).

``terms`` maps the current Placement onto the candidate table; ``annotate``
writes the diff (what moved where, why, cost delta, move cost) into the new
Placement's ``spec.changes``.
"""

from __future__ import annotations

from fleetplane.model.placement import Placement, PlacementChange, WorkloadPlacement
from fleetplane.model.policy import PlacementPolicy
from fleetplane.model.units import HOURS_PER_MONTH
from fleetplane.placement._internal.candidates import Allocation, Candidates
from fleetplane.placement._internal.context import PlanContext
from fleetplane.placement._internal.diff import changes
from fleetplane.placement._internal.moves import (
    MoveTerms,
    current_pattern,
    previous_by_name,
    workload_pinned,
)
from fleetplane.placement._internal.patterns import pattern_of
from fleetplane.placement._internal.scoring import Scorer


def terms(
    ctx: PlanContext,
    table: list[Candidates],
    scorers: list[Scorer],
    current: Placement,
    policy: PlacementPolicy,
    cordoned: set[str],
    broad: bool,
) -> MoveTerms:
    site_names = [s.name for s in ctx.index.sites]
    pools = [p.name for p in ctx.index.pools]
    previous = previous_by_name(current)
    mapped = {}
    forced: set[str] = set()
    pinned: set[str] = set()
    for cands, scorer in zip(table, scorers, strict=True):
        name = cands.view.name
        placed = previous.get(name)
        if placed is None:
            continue
        found = current_pattern(cands, scorer, placed, site_names, pools)
        if found is None:
            forced.add(name)
            continue
        mapped[name] = found
        if workload_pinned(ctx.fleet, placed):
            pinned.add(name)
    spec = policy.spec
    return MoveTerms(
        current=mapped,
        forced=forced,
        pinned=pinned,
        no_new_sites={i for i, n in enumerate(site_names) if n in cordoned},
        disruption=spec.move_cost.disruption,
        include_transfer=spec.move_cost.include_transfer,
        budget=spec.move_budget,
        broad=broad,
        previous=previous,
        payback_months=spec.move_cost.payback_period / (HOURS_PER_MONTH * 3600.0),
    )


def annotate(
    placement: Placement,
    current: Placement,
    moves: MoveTerms,
    table: dict[str, Candidates],
    scorers: dict[str, Scorer],
    allocations: dict[str, list[Allocation]],
) -> Placement:
    """``placement`` with ``spec.changes`` against ``current``: reasons and move costs."""

    def reason(name: str, before: WorkloadPlacement | None, after: WorkloadPlacement | None) -> str:
        if name in moves.forced:
            sites = {a.site for a in before.assignments} if before else set()
            return (
                f"forced: the current placement on {', '.join(sorted(sites))} is no longer "
                "possible (site draining, pool gone or a constraint now fails)"
            )
        if before is None:
            return "new workload"
        if after is None:
            return "no longer placeable"
        return "cheaper by more than the move costs over the payback period"

    found = changes(current, placement, reason)
    priced: list[PlacementChange] = []
    for change in found:
        name = change.workload
        cost = 0.0
        if change.action == "moved" and name in table and name in allocations:
            pattern = pattern_of(scorers[name], allocations[name], "new")
            cost = moves.move_cost(table[name], pattern)
        if change.action == "moved" and change.reason.startswith("cheaper"):
            change = change.model_copy(update={"reason": _saving(change.cost_delta, cost, moves)})
        priced.append(change.model_copy(update={"move_cost": cost}))
    spec = placement.spec.model_copy(update={"changes": priced})
    return placement.model_copy(update={"spec": spec})


def _saving(cost_delta: float, move_cost: float, moves: MoveTerms) -> str:
    text = f"saves {-cost_delta:,.2f}/month, move costs {move_cost:,.2f} once"
    if move_cost > 0 and cost_delta < 0:
        text += (
            f" (pays back in {move_cost / -cost_delta:.2g} month(s); "
            f"payback period {moves.payback_months:.2g})"
        )
    return text
