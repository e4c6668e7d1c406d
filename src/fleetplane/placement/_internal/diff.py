"""The difference between two plans, workload by workload (re-planning and what-if)."""

from __future__ import annotations

from collections.abc import Callable

from fleetplane.model.placement import Placement, PlacementChange, WorkloadPlacement

Reason = Callable[[str, WorkloadPlacement | None, WorkloadPlacement | None], str]


def where(item: WorkloadPlacement) -> list[str]:
    return [f"{a.site}/{a.pool} ×{a.replicas}" for a in item.assignments]


def _places(item: WorkloadPlacement) -> set[tuple[str, str, str]]:
    return {(a.site, a.pool, a.profile) for a in item.assignments}


def _action(before: WorkloadPlacement | None, after: WorkloadPlacement | None) -> str | None:
    if before is None and after is None:
        return None
    if before is None:
        return "placed"
    if after is None:
        return "unplaced"
    if _places(before) != _places(after):
        return "moved"
    if where(before) != where(after):
        return "scaled"
    return None


def changes(
    before: Placement, after: Placement, reason: Reason | None = None
) -> list[PlacementChange]:
    """Every workload whose sites, pools or replicas differ (sorted by name)."""
    old = {w.workload: w for w in before.spec.workloads}
    new = {w.workload: w for w in after.spec.workloads}
    out: list[PlacementChange] = []
    for name in sorted(set(old) | set(new)):
        b, a = old.get(name), new.get(name)
        action = _action(b, a)
        if action is None:
            continue
        delta = (a.cost.total if a else 0.0) - (b.cost.total if b else 0.0)
        out.append(
            PlacementChange(
                workload=name,
                action=action,
                before=where(b) if b else [],
                after=where(a) if a else [],
                reason=reason(name, b, a) if reason else "",
                cost_delta=delta,
            )
        )
    return out


def moved(change: PlacementChange) -> bool:
    return change.action == "moved"
