"""The full-problem lower bound (placement/_internal/lower_bound.py) bounds every plan."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from fleetplane.model.fleet import Fleet
from fleetplane.model.loader import read_fleet
from fleetplane.model.synthetic import generate_fleet
from fleetplane.placement._internal import exact, feasibility, greedy, lower_bound, pipeline
from fleetplane.placement._internal.capacity import CapacityState
from fleetplane.placement._internal.context import PlanContext
from fleetplane.placement._internal.rules import compile_policy
from fleetplane.placement._internal.scoring import build_scorer
from fleetplane.placement._internal.solve import SolverInput

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _input(fleet: Fleet) -> SolverInput:
    ctx = PlanContext.build(fleet, compile_policy(pipeline.choose_policy(fleet, None)))
    screened = [feasibility.screen(ctx, ctx.view(n)) for n in sorted(fleet.workloads)]
    feasibility.resolve_latency(screened)
    table = [feasibility.finish(ctx, s) for s in screened]
    scorers = [build_scorer(c, ctx.objective) for c in table]
    full = pipeline._full_star_replicas(table)
    return SolverInput(table, scorers, CapacityState(ctx.index), ctx.domain_names, 0, full)


def _fresh(inp: SolverInput) -> SolverInput:
    return replace(inp, capacity=CapacityState(inp.capacity.index))


@pytest.mark.parametrize(
    "fleet",
    [
        pytest.param(lambda: generate_fleet(20, 80, seed=5), id="generated"),
        pytest.param(lambda: read_fleet(EXAMPLES / "factory").fleet, id="factory"),  # spread
        pytest.param(lambda: read_fleet(EXAMPLES / "retail-edge").fleet, id="retail-edge"),
    ],
)
def test_bound_is_below_every_plan_and_the_proven_pattern_optimum(
    fleet: Callable[[], Fleet],
) -> None:
    inp = _input(fleet())
    # Greedy alone splits stars and tasks in ways outside the exact solver's pattern set:
    # the full-problem bound must hold for those plans too.
    raw = greedy.solve(_fresh(inp))
    solved = exact.solve(_fresh(inp))
    placed = set(solved.allocations)
    assert placed >= set(raw.allocations)
    bound = lower_bound.full_bound(_fresh(inp), placed)
    assert bound is not None and bound > 0
    assert bound <= solved.objective + 1e-6 * abs(solved.objective)
    bound_raw = lower_bound.full_bound(_fresh(inp), set(raw.allocations))
    assert bound_raw is not None and bound_raw <= raw.objective + 1e-6 * abs(raw.objective)
    if solved.status == "optimal" and solved.bound is not None:
        # Optimal over the patterns ≥ optimal over all plans ≥ the relaxation.
        assert bound <= solved.bound + 1e-6 * abs(solved.bound)


def test_the_integral_bound_is_at_least_the_relaxation() -> None:
    inp = _input(generate_fleet(10, 30, seed=1))
    placed = set(exact.solve(_fresh(inp)).allocations)
    relaxed = lower_bound.full_bound(_fresh(inp), placed)
    integral = lower_bound.full_bound(_fresh(inp), placed, integer=True, time_limit=20)
    assert relaxed is not None and integral is not None
    assert integral >= relaxed - 1e-6 * abs(relaxed)
