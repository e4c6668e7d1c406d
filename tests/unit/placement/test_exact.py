"""Exact solver: never worse than greedy, verified by the engine, and monotone when optimal."""

from __future__ import annotations

import pytest

from fleetplane.model.synthetic import generate_fleet
from fleetplane.placement import plan
from fleetplane.placement._internal.whatif import WhatIf, apply


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_exact_cost_never_above_greedy(seed: int) -> None:
    fleet = generate_fleet(12, 40, seed=seed)
    greedy = plan(fleet)
    exact = plan(fleet, solver="exact", time_limit=5)
    g, e = greedy.placement.spec, exact.placement.spec
    assert len(e.workloads) >= len(g.workloads)
    assert e.solver.objective is not None and g.solver.objective is not None
    if len(e.workloads) == len(g.workloads):
        assert e.solver.objective <= g.solver.objective + 1e-6
    assert e.solver.bound is not None and e.solver.bound <= e.solver.objective + 1e-6
    assert e.solver.optimality_gap is not None and e.solver.optimality_gap >= 0


def test_exact_is_deterministic() -> None:
    fleet = generate_fleet(10, 30, seed=4)
    a = plan(fleet, solver="exact", time_limit=5).placement.spec.workloads
    b = plan(fleet, solver="exact", time_limit=5).placement.spec.workloads
    assert a == b


def test_removing_a_site_never_makes_an_optimal_plan_cheaper() -> None:
    fleet = generate_fleet(12, 30, seed=5)
    full = plan(fleet, solver="exact", time_limit=5).placement.spec
    if full.solver.status != "optimal":
        pytest.skip("not proven optimal within the limit")
    used = sorted({a.site for w in full.workloads for a in w.assignments})
    for site in used[:2]:
        less = plan(apply(fleet, WhatIf(without_sites=(site,))), solver="exact", time_limit=5)
        spec = less.placement.spec
        if len(spec.workloads) == len(full.workloads):
            assert spec.solver.objective is not None and full.solver.objective is not None
            assert spec.solver.objective >= full.solver.objective - 1e-6
