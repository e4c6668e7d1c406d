"""How the placement controller calls the engine, and what it holds fixed around it.

Sites are given to the engine as the operator and the reachability
controller left them, with two adjustments that carry the control plane's
promises:

* a **Lost** site is cordoned and draining: nothing new goes there and what
  runs there moves away;
* an **Unreachable** site is cordoned (no new work is sent where nobody can
  receive it) and every assignment it holds is *pinned*; after planning,
  any workload the engine moved off an unreachable site anyway gets its
  previous placement back. Workloads are never re-placed or deleted because
  a site stopped answering — only because it was declared Lost.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from fleetplane.model.fleet import Fleet
from fleetplane.model.placement import Placement, WorkloadPlacement

Planner = Callable[[Fleet, Placement | None], Placement]

UNREACHABLE = "Unreachable"
LOST = "Lost"


def engine_planner() -> Planner:
    """``fleetplane.placement.plan``, started from the current plan when it accepts one."""
    from fleetplane.placement import plan

    # Move-aware re-planning (``current=``) is used as soon as the engine offers it.
    engine: Any = plan
    accepts_current = "current" in inspect.signature(engine).parameters

    def run(fleet: Fleet, current: Placement | None) -> Placement:
        result: Any = engine(fleet, current=current) if accepts_current else engine(fleet)
        placement = result if isinstance(result, Placement) else result.placement
        if not isinstance(placement, Placement):
            raise TypeError(f"the placement engine returned {type(result).__name__}")
        return placement

    return run


def planning_input(
    fleet: Fleet, reachability: dict[str, str], current: Placement | None
) -> tuple[Fleet, Placement | None]:
    """The fleet with Lost/Unreachable sites adjusted, and the current plan with pins set."""
    sites = dict(fleet.sites)
    for name, site in fleet.sites.items():
        state = reachability.get(name)
        if state == LOST:
            sites[name] = site.model_copy(
                update={"spec": site.spec.model_copy(update={"cordoned": True, "draining": True})}
            )
        elif state == UNREACHABLE:
            sites[name] = site.model_copy(
                update={"spec": site.spec.model_copy(update={"cordoned": True})}
            )
    adjusted = Fleet(
        name=fleet.name,
        sites=sites,
        links=fleet.links,
        node_images=fleet.node_images,
        data_sources=fleet.data_sources,
        workloads=fleet.workloads,
        policies=fleet.policies,
    )
    if current is None:
        return adjusted, None
    unreachable = {name for name, state in reachability.items() if state == UNREACHABLE}
    pinned = [
        placed.model_copy(
            update={
                "assignments": [
                    a.model_copy(update={"pinned": a.pinned or a.site in unreachable})
                    for a in placed.assignments
                ]
            }
        )
        for placed in current.spec.workloads
    ]
    return adjusted, current.model_copy(
        update={"spec": current.spec.model_copy(update={"workloads": pinned})}
    )


def keep_unreachable(
    planned: Placement, current: Placement | None, reachability: dict[str, str], fleet: Fleet
) -> tuple[Placement, list[str]]:
    """``planned`` with every workload that ran on an unreachable site put back as it was.

    Returns the corrected plan and the names of the workloads restored.
    """
    if current is None:
        return planned, []
    unreachable = {name for name, state in reachability.items() if state == UNREACHABLE}
    before = {placed.workload: placed for placed in current.spec.workloads}
    restored: list[str] = []
    workloads: list[WorkloadPlacement] = []
    for placed in planned.spec.workloads:
        previous = before.get(placed.workload)
        if previous is not None and placed.workload in fleet.workloads and _lost_a_site(
            previous, placed, unreachable
        ):
            workloads.append(previous)
            restored.append(placed.workload)
        else:
            workloads.append(placed)
    planned_names = {placed.workload for placed in planned.spec.workloads}
    unplaceable = list(planned.spec.unplaceable)
    for name, previous in before.items():
        held = any(a.site in unreachable for a in previous.assignments)
        if name not in planned_names and held and name in fleet.workloads:
            workloads.append(previous)
            restored.append(name)
            unplaceable = [u for u in unplaceable if u.workload != name]
    if not restored:
        return planned, []
    spec = planned.spec.model_copy(update={"workloads": workloads, "unplaceable": unplaceable})
    return planned.model_copy(update={"spec": spec}), sorted(restored)


def _lost_a_site(
    previous: WorkloadPlacement, planned: WorkloadPlacement, unreachable: set[str]
) -> bool:
    kept = {(a.site, a.pool, a.replicas) for a in planned.assignments}
    return any(
        a.site in unreachable and (a.site, a.pool, a.replicas) not in kept
        for a in previous.assignments
    )
