"""Placement quality benchmark (issue 3): greedy vs exact, baselines, re-plan stability.

    python benchmarks/placement_quality.py [--instances 20] [--time-limit 30]
    python benchmarks/placement_quality.py --auto-sizes 500,1000,2000,5000 --time-limit 10

``--auto-sizes`` times greedy and exact on generated fleets of those many
workloads (one site per five, as in the quality instances) instead of the
three parts below: the data behind ``--solver auto``'s threshold.

Prints a table per part and a final headline line. The exact solver's bound
is over its pattern set (docs/placement.md): "gap to bound" is greedy's
distance from that bound.
"""

from __future__ import annotations

import argparse
import time

from fleetplane.model.loader import read_fleet
from fleetplane.model.synthetic import generate_fleet
from fleetplane.placement import default_policy, plan
from fleetplane.placement._internal.baselines import compare, slo_misses
from fleetplane.placement._internal.whatif import WhatIf, apply

EXAMPLES = ("retail-edge", "factory", "telco-mec", "hybrid-hpc")


def quality(instances: int, limit: float) -> list[float]:
    print("instance  greedy      exact       bound       greedy-gap  exact-gap  exact-s  status")
    gaps = []
    for seed in range(instances):
        fleet = generate_fleet(60, 300, seed=seed)
        g = plan(fleet).placement.spec.solver
        t = time.perf_counter()
        e = plan(fleet, solver="exact", time_limit=limit).placement.spec.solver
        took = time.perf_counter() - t
        assert g.objective is not None and e.objective is not None
        bound = e.bound if e.bound is not None else e.objective
        gap = (g.objective - bound) / g.objective
        gaps.append(gap)
        print(
            f"{seed:8d}  {g.objective:10.2f}  {e.objective:10.2f}  {bound:10.2f}  "
            f"{gap:9.3%}  {e.optimality_gap or 0:8.3%}  {took:7.1f}  {e.status}"
        )
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


def stability() -> tuple[int, int]:
    fleet = read_fleet("examples/retail-edge").fleet
    first = plan(fleet).placement
    base = default_policy()
    free = base.model_copy(
        update={
            "spec": base.spec.model_copy(
                update={
                    "move_cost": base.spec.move_cost.model_copy(
                        update={"disruption": 0.0, "include_transfer": False}
                    )
                }
            )
        }
    )
    moved = {}
    for label, policy in (("with move costs", base), ("without move costs", free)):
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
    worst = max(gaps) if gaps else float("nan")
    print(
        f"HEADLINE greedy worst gap to exact bound {worst:.2%} over {len(gaps)} instances; "
        f"re-plan moves {with_cost} with move costs vs {without} without"
    )


if __name__ == "__main__":
    main()
