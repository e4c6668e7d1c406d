"""Re-planning from a current plan: stability, pins, cordon and drain, the move budget."""

from __future__ import annotations

from dataclasses import replace

from fleetplane.model.synthetic import generate_fleet
from fleetplane.placement import plan
from fleetplane.placement._internal.whatif import WhatIf, apply


def _fleet():  # type: ignore[no-untyped-def]
    return generate_fleet(10, 30, seed=7)


def test_unchanged_fleet_moves_nothing() -> None:
    fleet = _fleet()
    first = plan(fleet).placement
    again = plan(fleet, current=first).placement
    assert [c for c in again.spec.changes if c.action == "moved"] == []


def test_draining_site_moves_everything_off() -> None:
    fleet = _fleet()
    first = plan(fleet).placement
    site = first.spec.workloads[0].assignments[0].site
    drained = apply(fleet, WhatIf(without_sites=(site,)))
    again = plan(drained, current=first).placement
    assert all(a.site != site for w in again.spec.workloads for a in w.assignments)
    moved = {c.workload for c in again.spec.changes if c.action in ("moved", "unplaced")}
    assert first.spec.workloads[0].workload in moved


def test_cordoned_site_keeps_what_runs_there_and_takes_nothing_new() -> None:
    fleet = _fleet()
    first = plan(fleet).placement
    site = first.spec.workloads[0].assignments[0].site
    before = {
        w.workload for w in first.spec.workloads if any(a.site == site for a in w.assignments)
    }
    s = fleet.sites[site]
    cordoned = replace(
        fleet,
        sites={
            **fleet.sites,
            site: s.model_copy(update={"spec": s.spec.model_copy(update={"cordoned": True})}),
        },
    )
    again = plan(cordoned, current=first).placement
    after = {w.workload for w in again.spec.workloads if any(a.site == site for a in w.assignments)}
    assert after <= before
    assert before == after  # nothing had a reason to leave


def test_move_budget_zero_keeps_everything_that_can_stay() -> None:
    fleet = _fleet()
    first = plan(fleet).placement
    bigger = apply(fleet, WhatIf(scale_demand=0.5))
    policy = plan(fleet).placement.spec.policy
    assert policy is not None
    from fleetplane.placement import default_policy

    base = default_policy()
    frozen = base.model_copy(update={"spec": base.spec.model_copy(update={"move_budget": 0})})
    again = plan(bigger, frozen, current=first).placement
    assert [c for c in again.spec.changes if c.action == "moved"] == []


def test_raised_replica_floor_resizes_instead_of_keeping_the_current_plan() -> None:
    fleet = _fleet()
    first = plan(fleet).placement
    placed = next(w for w in first.spec.workloads
                  if len(w.assignments) == 1 and w.assignments[0].replicas == 1)
    workload = fleet.workloads[placed.workload]
    bounds = workload.spec.replicas.model_copy(
        update={"min": 2, "max": max(2, workload.spec.replicas.max)})
    spec = workload.spec.model_copy(update={"replicas": bounds})
    raised = workload.model_copy(update={"spec": spec})
    again = plan(replace(fleet, workloads={**fleet.workloads, placed.workload: raised}),
                 current=first).placement
    (now,) = [w for w in again.spec.workloads if w.workload == placed.workload]
    assert all(a.replicas >= 2 for a in now.assignments)
