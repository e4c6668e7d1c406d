"""Exact solver: never worse than greedy, verified by the engine, and monotone when optimal."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fleetplane.model.loader import read_fleet
from fleetplane.model.synthetic import generate_fleet
from fleetplane.placement import plan
from fleetplane.placement._internal import exact as exact_module
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


EXAMPLES = Path(__file__).parents[3] / "examples"


def test_node_level_cuts_make_the_bound_packable_on_hybrid_hpc() -> None:
    # Pool totals alone let the MILP put 40 + 60 node-filling replicas on 96 nodes
    # (bound 296,738, not packable); with the cuts the bound is greedy's packable plan.
    fleet = read_fleet(EXAMPLES / "hybrid-hpc").fleet
    greedy = plan(fleet).placement.spec
    exact = plan(fleet, solver="exact", time_limit=10).placement.spec
    assert exact.solver.status == "optimal"
    assert exact.solver.bound is not None and exact.solver.objective is not None
    assert greedy.solver.objective is not None
    assert exact.solver.bound == pytest.approx(exact.solver.objective, rel=1e-6)
    assert exact.solver.objective <= greedy.solver.objective + 1e-6


def test_repair_replaces_only_the_workloads_that_do_not_pack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: dict[str, Any] = {}
    milp = exact_module.milp

    def spy(inp: Any, columns: Any, must: Any, start: Any, max_nodes: Any = None) -> Any:
        if len(inp.table) > len(seen.get("inp", inp).table) or "inp" not in seen:
            seen["inp"], seen["columns"] = inp, columns  # the whole fleet's MILP, not a sub-problem
        return milp(inp, columns, must, start, max_nodes)

    monkeypatch.setattr(exact_module, "milp", spy)
    plan(read_fleet(EXAMPLES / "hybrid-hpc").fleet, solver="exact", time_limit=10)
    inp, columns = seen["inp"], seen["columns"]
    # Every workload on its cheapest pattern, capacity ignored: more than the HPC pool packs.
    cheapest: dict[int, Any] = {}
    for col in columns:
        if col.workload not in cheapest or col.pattern.cost < cheapest[col.workload].cost:
            cheapest[col.workload] = col.pattern
    assert exact_module._pack(inp, inp.capacity.copy(), cheapest) is None
    capacity = inp.capacity.copy()
    done = exact_module.pack_repairing(inp, capacity, cheapest, columns)
    assert done.repaired >= 1
    assert capacity.overcommitted() == []
    kept = [w for w in done.patterns if done.patterns[w] is cheapest[w]]
    assert len(kept) == len(done.patterns) - done.repaired
    # What stays unplaced has no pattern at all that packs in the capacity left.
    for w in set(cheapest) - set(done.allocations):
        for col in columns:
            if col.workload == w:
                assert exact_module._place(inp, capacity.copy(), w, col.pattern) is None
