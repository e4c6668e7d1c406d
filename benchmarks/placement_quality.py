"""Placement quality benchmark (issue 3): greedy vs exact, baselines, re-plan stability.

    python benchmarks/placement_quality.py [--instances 20] [--time-limit 30]
    python benchmarks/placement_quality.py --auto-sizes 500,1000,2000,5000 --time-limit 10

``--auto-sizes`` times greedy and exact on generated fleets of those many
workloads (one site per five, as in the quality instances) instead of the
three parts below: the data behind ``--solver auto``'s threshold.

Prints a table per part and a final headline line. Two lower bounds, on
different problems (docs/placement.md, "What the bounds prove"):

* ``pattern-bound`` — the exact solver's MILP dual bound: optimal over its
  pattern set (whole-workload single/paired candidates plus greedy's own
  allocations) with pool-level capacity and node cuts. Not a bound on plans
  outside that set (other splits of sources or tasks).
* ``full-bound`` — ``lower_bound.full_bound``: an LP relaxation of the whole
  problem (any split, any candidate, continuous replicas at least the
  stable-server count), valid for every plan placing the same workloads, but
  loose where latency sizing needs many more replicas than stability.

``greedy`` is the regret-ordered greedy alone, ``+improve`` the ``greedy``
solver (greedy followed by the improvement pass) and ``improve-s`` that
pass's time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace

from fleetplane.model.loader import read_fleet
from fleetplane.model.policy import PlacementPolicy
from fleetplane.model.synthetic import generate_fleet
from fleetplane.placement import default_policy, plan
from fleetplane.placement._internal import exact, greedy, improve, lower_bound
from fleetplane.placement._internal.baselines import compare, slo_misses
from fleetplane.placement._internal.capacity import CapacityState
from fleetplane.placement._internal.pipeline import SOLVERS
from fleetplane.placement._internal.solve import SolverInput, SolverOutput
from fleetplane.placement._internal.whatif import WhatIf, apply

EXAMPLES = ("retail-edge", "factory", "telco-mec", "hybrid-hpc")
MONTH_SECONDS = 730 * 3600.0


class _Measured:
    """Solvers that record what the plan's numbers hide: greedy alone, the pass's time, the LP."""

    def __init__(self) -> None:
        self.raw = 0.0
        self.improve_seconds = 0.0
        self.full_bound: float | None = None

    def greedy(self, inp: SolverInput) -> SolverOutput:
        out = greedy.solve(inp)
        self.raw = out.objective
        start = time.perf_counter()
        better = improve.improve(inp, out)
        self.improve_seconds = time.perf_counter() - start
        return better

    def exact(self, inp: SolverInput) -> SolverOutput:
        fresh = replace(inp, capacity=CapacityState(inp.capacity.index))
        out = exact.solve(inp)
        self.full_bound = lower_bound.full_bound(fresh, set(out.allocations))
        return out


def quality(instances: int, limit: float) -> list[tuple[float, float, float]]:
    print(
        "instance  greedy      +improve    improve-s  exact       pattern-bound  full-bound  "
        "gap-before  gap-after  gap-full  exact-s  status"
    )
    measured = _Measured()
    SOLVERS["greedy"] = measured.greedy
    SOLVERS["exact"] = measured.exact
    gaps = []
    try:
        for seed in range(instances):
            fleet = generate_fleet(60, 300, seed=seed)
            g = plan(fleet).placement.spec.solver
            raw, took_improve = measured.raw, measured.improve_seconds
            t = time.perf_counter()
            e = plan(fleet, solver="exact", time_limit=limit).placement.spec.solver
            took = time.perf_counter() - t
            assert g.objective is not None and e.objective is not None
            bound = e.bound if e.bound is not None else e.objective
            full = measured.full_bound if measured.full_bound is not None else float("nan")
            before = (raw - bound) / raw
            after = (g.objective - bound) / g.objective
            gap_full = (g.objective - full) / g.objective
            gaps.append((before, after, gap_full))
            print(
                f"{seed:8d}  {raw:10.2f}  {g.objective:10.2f}  {took_improve:9.3f}  "
                f"{e.objective:10.2f}  {bound:13.2f}  {full:10.2f}  {before:10.3%}  "
                f"{after:9.3%}  {gap_full:8.3%}  {took:7.1f}  {e.status}",
                flush=True,
            )
    finally:
        SOLVERS["greedy"] = improve.solve
        SOLVERS["exact"] = exact.solve
    return gaps


def baselines() -> None:
    print("example      plan        $/month     SLO misses  unplaced  fleetplane saves")
    for name in EXAMPLES:
        fleet = read_fleet(f"examples/{name}").fleet
        ours = plan(fleet).placement
        cost = ours.spec.cost.total
        print(
            f"{name:12s} fleetplane  {cost:10.2f}  {slo_misses(fleet, ours):10d}  "
            f"{len(ours.spec.unplaceable):8d}"
        )
        for b in compare(fleet):
            saving = (b.cost - cost) / b.cost if b.cost else 0.0
            print(
                f"{'':12s} {b.name:10s}  {b.cost:10.2f}  {b.slo_misses:10d}  {b.unplaced:8d}  "
                f"{saving:+.1%}"
            )


def _with_move_cost(**update: object) -> PlacementPolicy:
    base = default_policy()
    cost = base.spec.move_cost.model_copy(update=update)
    return base.model_copy(update={"spec": base.spec.model_copy(update={"move_cost": cost})})


def stability() -> tuple[int, int]:
    fleet = read_fleet("examples/retail-edge").fleet
    first = plan(fleet).placement
    base = default_policy()
    free = _with_move_cost(disruption=0.0, include_transfer=False)
    patient = _with_move_cost(payback_period=12 * MONTH_SECONDS)
    moved = {}
    for label, policy in (
        ("with move costs", base),
        ("with move costs, 12-month payback", patient),
        ("without move costs", free),
    ):
        total = 0
        for factor in (0.9, 1.1):
            again = plan(apply(fleet, WhatIf(scale_demand=factor)), policy, current=first)
            total += sum(1 for c in again.placement.spec.changes if c.action == "moved")
        moved[label] = total
        print(f"retail-edge demand ±10%: {total} moves {label}")
    return moved["with move costs"], moved["without move costs"]


def auto_sizes(sizes: list[int], limit: float) -> None:
    print("workloads  sites  greedy-s  exact-s  greedy      exact       saving   gap     status")
    for n in sizes:
        fleet = generate_fleet(max(n // 5, 2), n, seed=0)
        t = time.perf_counter()
        g = plan(fleet).placement.spec
        g_took = time.perf_counter() - t
        t = time.perf_counter()
        e = plan(fleet, solver="exact", time_limit=limit).placement.spec
        e_took = time.perf_counter() - t
        saving = (g.cost.total - e.cost.total) / g.cost.total if g.cost.total else 0.0
        gap = e.solver.optimality_gap
        print(
            f"{n:9d}  {n // 5:5d}  {g_took:8.1f}  {e_took:7.1f}  {g.cost.total:10.2f}  "
            f"{e.cost.total:10.2f}  {saving:7.2%}  {'-' if gap is None else f'{gap:.2%}':6s}  "
            f"{e.solver.status}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument("--time-limit", type=float, default=30.0)
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--auto-sizes", default="", help="comma-separated workload counts")
    args = parser.parse_args()
    if args.auto_sizes:
        auto_sizes([int(n) for n in args.auto_sizes.split(",")], args.time_limit)
        return
    gaps = [] if args.skip_quality else quality(args.instances, args.time_limit)
    baselines()
    with_cost, without = stability()
    nan = float("nan")
    before = [g[0] for g in gaps]
    after = [g[1] for g in gaps]
    full = [g[2] for g in gaps]
    print(
        f"HEADLINE greedy+improve gap to the pattern bound: worst {max(after, default=nan):.2%}, "
        f"median {statistics.median(after) if after else nan:.2%} over {len(gaps)} instances "
        f"(greedy alone: worst {max(before, default=nan):.2%}, median "
        f"{statistics.median(before) if before else nan:.2%}); to the full-problem LP bound: "
        f"worst {max(full, default=nan):.2%}; re-plan moves {with_cost} with move costs vs "
        f"{without} without"
    )


if __name__ == "__main__":
    main()
