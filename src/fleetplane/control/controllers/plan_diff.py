"""What changed between two Placement generations: moves, additions, removals, cost delta."""

from __future__ import annotations

from typing import Any

from fleetplane.model.placement import Placement


def _where(placement: Placement | None) -> dict[str, list[dict[str, Any]]]:
    if placement is None:
        return {}
    return {
        placed.workload: sorted(
            ({"site": a.site, "pool": a.pool, "replicas": a.replicas} for a in placed.assignments),
            key=lambda item: (item["site"], item["pool"]),
        )
        for placed in placement.spec.workloads
    }


def placement_diff(
    previous: Placement | None, current: Placement, previous_generation: int
) -> dict[str, Any]:
    before, after = _where(previous), _where(current)
    moves = [
        {"workload": name, "from": before[name], "to": after[name]}
        for name in sorted(set(before) & set(after))
        if before[name] != after[name]
    ]
    old_cost = previous.spec.cost.total if previous is not None else 0.0
    return {
        "previousGeneration": previous_generation,
        "moved": moves,
        "added": [{"workload": n, "to": after[n]} for n in sorted(set(after) - set(before))],
        "removed": [{"workload": n, "from": before[n]} for n in sorted(set(before) - set(after))],
        "costDelta": round(current.spec.cost.total - old_cost, 6),
    }


def comparable(spec: dict[str, Any]) -> dict[str, Any]:
    """A Placement spec without what differs between two runs of the same plan (solver time)."""
    solver = dict(spec.get("solver") or {})
    solver.pop("timeSeconds", None)
    return {**spec, "solver": solver}
