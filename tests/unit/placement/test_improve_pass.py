"""The improvement pass after greedy (placement/_internal/improve.py)."""

from __future__ import annotations

from dataclasses import replace
from functools import cache
from pathlib import Path

import pytest

from fleetplane.model.fleet import Fleet
from fleetplane.model.loader import read_fleet
from fleetplane.model.synthetic import generate_fleet
from fleetplane.placement import plan
from fleetplane.placement._internal import exact, feasibility, greedy, improve, pipeline
from fleetplane.placement._internal.capacity import CapacityState
from fleetplane.placement._internal.context import PlanContext
from fleetplane.placement._internal.patterns import (
    cheapest_whole,
    cheapest_whole_many,
    empty_fits,
    pattern_of,
)
from fleetplane.placement._internal.rules import compile_policy
from fleetplane.placement._internal.scoring import build_scorer
from fleetplane.placement._internal.solve import SolverInput, SolverOutput, needs_spread

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@cache
def _input(sites: int, workloads: int, seed: int) -> SolverInput:
    return _input_for(generate_fleet(sites, workloads, seed=seed))


def _input_for(fleet: Fleet) -> SolverInput:
    ctx = PlanContext.build(fleet, compile_policy(pipeline.choose_policy(fleet, None)))
    screened = [feasibility.screen(ctx, ctx.view(n)) for n in sorted(fleet.workloads)]
    feasibility.resolve_latency(screened)
    table = [feasibility.finish(ctx, s) for s in screened]
    scorers = [build_scorer(c, ctx.objective) for c in table]
    full = pipeline._full_star_replicas(table)
    return SolverInput(table, scorers, CapacityState(ctx.index), ctx.domain_names, 0, full)


def _fresh(inp: SolverInput) -> SolverInput:
    return replace(inp, capacity=CapacityState(inp.capacity.index))


def _run(
    inp: SolverInput,
) -> tuple[SolverOutput, SolverOutput, improve.ImproveStats, CapacityState]:
    run = _fresh(inp)
    before = greedy.solve(run)
    stats = improve.ImproveStats()
    after = improve.improve(run, before, stats)
    return before, after, stats, run.capacity


def test_greedy_solver_is_greedy_then_the_improvement_pass() -> None:
    assert pipeline.SOLVERS["greedy"] is improve.solve


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_never_worse_never_unplaces_and_packs_through_capacity(seed: int) -> None:
    inp = _input(20, 80, seed)
    before, after, _, capacity = _run(inp)
    assert set(before.allocations) <= set(after.allocations)
    assert after.objective <= before.objective + 1e-6
    assert capacity.overcommitted() == []
    # The reported objective is the plan's: the sum of its allocations' Scorer objective.
    names = {c.view.name: w for w, c in enumerate(inp.table)}
    total = sum(
        pattern_of(inp.scorers[names[n]], allocs, "x").cost
        for n, allocs in after.allocations.items()
    )
    assert total == pytest.approx(after.objective, rel=1e-9)
    # Replaying the plan on an empty fleet packs every replica: nothing was placed around
    # CapacityState.
    replay = CapacityState(inp.capacity.index)
    for n, allocs in after.allocations.items():
        cands = inp.table[names[n]]
        for a in allocs:
            assert replay.place(int(cands.row[a.candidate]), a.replicas, cands.demand(a.candidate))
    assert replay.overcommitted() == []


def test_knapsack_on_the_hpc_pool_is_repaired() -> None:
    # Generated instance 4 of the quality benchmark: greedy gives the on-prem dgx-h100 pool to
    # the jobs with the largest absolute regret (whole-node tasks) and was 12.7% above the
    # exact solver's bound when measured; ruin and recreate of that pool closes it.
    inp = _input(60, 300, 4)
    before, after, stats, capacity = _run(inp)
    bound = exact.solve(_fresh(inp)).bound
    assert bound is not None
    assert stats.pools_improved >= 1
    assert after.objective < before.objective - 1e-6
    assert after.objective <= bound * 1.03
    assert capacity.overcommitted() == []


def test_deterministic() -> None:
    inp = _input(60, 300, 4)
    first = _run(inp)[1]
    second = _run(inp)[1]
    assert first.allocations == second.allocations
    assert first.objective == second.objective


def test_plan_with_the_pass_verifies_and_exact_is_never_worse() -> None:
    fleet = generate_fleet(20, 80, seed=3)
    greedy_spec = plan(fleet).placement.spec
    exact_spec = plan(fleet, solver="exact", time_limit=10).placement.spec
    assert greedy_spec.solver.objective is not None and exact_spec.solver.objective is not None
    assert exact_spec.solver.objective <= greedy_spec.solver.objective + 1e-6


@pytest.mark.parametrize("source", ["generated", "factory"])
def test_vectorised_cheapest_whole_matches_the_per_workload_one(source: str) -> None:
    # The factory example has a 99.99% workload: the spread (paired) case.
    inp = (
        _input(60, 300, 4)
        if source == "generated"
        else _input_for(read_fleet(EXAMPLES / "factory").fleet)
    )
    index = inp.capacity.index
    workloads = list(range(len(inp.table)))
    many = cheapest_whole_many(index, inp.table, inp.scorers, inp.full_replicas, workloads)
    spread = 0
    for w in workloads:
        cands = inp.table[w]
        one = (
            cheapest_whole(cands, inp.scorers[w], inp.full_replicas[w], empty_fits(index, cands))
            if cands.size
            else None
        )
        if one is None:
            assert w not in many
        else:
            assert many[w] == pytest.approx(one, rel=1e-12)
            spread += needs_spread(cands)
    assert len(many) >= len(workloads) // 2
    assert spread > 0 or source == "generated"
