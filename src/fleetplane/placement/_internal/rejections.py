"""Rejected sites for ``plan --explain``: every site that cannot run a workload, grouped by why.

Uses feasibility's diagnosis (every filter on every pool, no early exit), so
the reasons are the same words the unplaceable summary uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from fleetplane.placement._internal import feasibility
from fleetplane.placement._internal.context import PlanContext
from fleetplane.placement._internal.workload_view import WorkloadView


@dataclass(frozen=True)
class RejectionGroup:
    """Sites whose first failed constraint (on their most promising pool) is ``constraint``."""

    constraint: str
    sites: int
    examples: list[str]  # "site/pool: the reason in words"


def rejected_sites(ctx: PlanContext, view: WorkloadView, examples: int = 3) -> list[RejectionGroup]:
    """Every site with no feasible pool, grouped by constraint in filter order.

    A site's constraint is the furthest filter any of its pools reached (so a
    site with a GPU pool that is too far away is a latency rejection, not a
    hardware one); examples are the closest misses first.
    """
    by_site = feasibility.diagnose(ctx, view).by_site(ctx)
    groups = []
    for stage, (_, label) in enumerate(feasibility.STAGES):
        misses = sorted(
            (m for m in by_site.values() if m.stage == stage), key=lambda m: (m.ratio, m.row)
        )
        if misses:
            groups.append(
                RejectionGroup(
                    label,
                    len(misses),
                    [feasibility.reason(ctx, view, m) for m in misses[:examples]],
                )
            )
    return groups
