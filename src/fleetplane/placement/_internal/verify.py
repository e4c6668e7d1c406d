"""Final verification: re-check every allocation of any solver against every hard constraint.

It does not trust the candidate table a solver worked from: filters are
re-run on the allocation's (pool, profile) from the fleet itself, latency is
recomputed exactly with the final replica counts, and capacity is replayed
node by node from the allocations into a fresh :class:`CapacityState`. Any
violation means a solver bug, so the plan is refused with
:class:`~fleetplane.errors.PlacementError` rather than returned.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fleetplane.errors import PlacementError
from fleetplane.placement._internal import feasibility, prediction
from fleetplane.placement._internal.candidates import Allocation, Candidates
from fleetplane.placement._internal.capacity import CapacityState
from fleetplane.placement._internal.context import PlanContext
from fleetplane.placement._internal.solve import needs_spread
from fleetplane.placement._internal.workload_view import WorkloadView


@dataclass(frozen=True)
class SourceLatency:
    """Exact quantiles (by target) of one source's requests at one allocation, at design load."""

    allocation: int
    source: int
    values: tuple[float, ...]  # one per target of the workload, same order


def _check_row(
    ctx: PlanContext, view: WorkloadView, alloc: Allocation, cands: Candidates
) -> list[str]:
    row = int(cands.row[alloc.candidate])
    profile = view.profiles[int(cands.profile[alloc.candidate])]
    rows = np.array([row], dtype=np.int64)
    where = f"workload {view.name} at {ctx.index.row_label(row)} ({profile.hardware})"
    problems = []
    for key, stage in (
        ("site", feasibility._site),
        ("hardware", feasibility._hardware),
        ("image", feasibility._image),
        ("storage", feasibility._storage),
        ("capacity", feasibility._capacity),
        ("power", feasibility._power),
        ("deadline", feasibility._deadline),
    ):
        ok, _ = stage(ctx, view, profile, rows)
        if not ok[0]:
            problems.append(f"{where}: fails the {key} filter")
    allowed = view.workload.spec.residency
    zone = ctx.index.site_of_row(row).spec.residency_zone
    if allowed and zone not in allowed:
        problems.append(f"{where}: zone {zone} is outside the workload's residency {allowed}")
    served = [s for s, d in enumerate(alloc.design_shares) if d > 0]
    if view.sources:
        zone_ok = feasibility.source_zone_ok(ctx, view, rows)[:, 0]
        reach = feasibility.source_reachable(ctx, view, rows)[:, 0]
        for s in served:
            if not zone_ok[s]:
                problems.append(f"{where}: data of {view.sources[s].name} would leave its zone")
            if not reach[s]:
                problems.append(f"{where}: no network path from {view.sources[s].name}")
    ok, _ = ctx.rules.require(view, profile, rows)
    if not ok[0]:
        problems.append(f"{where}: a require rule of the policy does not hold")
    splits = view.is_job and not needs_spread(cands)
    low = 1 if splits else view.min_replicas
    if not low <= alloc.replicas <= view.max_replicas:
        problems.append(f"{where}: {alloc.replicas} replicas outside [{low}, {view.max_replicas}]")
    return problems


def _check_coverage(
    ctx: PlanContext, view: WorkloadView, cands: Candidates, allocs: list[Allocation]
) -> list[str]:
    problems: list[str] = []
    if not allocs:
        return [f"workload {view.name}: placed with no allocation"]
    spread = needs_spread(cands)
    for s, src in enumerate(view.sources):
        routed = sum(a.shares[s] for a in allocs)
        if abs(routed - 1.0) > 1e-6:
            problems.append(f"workload {view.name}: {routed:.3f} of {src.name}'s traffic is routed")
        if spread:
            domains = {int(cands.domain[a.candidate]) for a in allocs if a.design_shares[s] >= 1.0}
            if len(domains) < 2:
                problems.append(
                    f"workload {view.name}: {src.name} is served in "
                    f"{len(domains)} failure domain(s), "
                    "availability needs 2 each able to take all of it"
                )
    if spread and not view.sources:
        domains = {int(cands.domain[a.candidate]) for a in allocs}
        if len(domains) < 2:
            problems.append(f"workload {view.name}: availability needs 2 failure domains")
    if view.is_job and not spread:
        tasks = sum(a.replicas for a in allocs)
        if not view.min_replicas <= tasks <= view.max_replicas:
            problems.append(
                f"workload {view.name}: {tasks} tasks placed, needs {view.min_replicas}"
            )
    return problems


def design_latencies(
    ctx: PlanContext, table: dict[str, Candidates], allocations: dict[str, list[Allocation]]
) -> dict[str, list[SourceLatency]]:
    """Exact quantiles at every target for every (allocation, source served), from the fleet.

    Computed at the design load (peak, and for spread workloads with the other
    failure domain lost), in one batched call over the whole plan.
    """
    parts_list: list[prediction.Parts] = []
    lam: list[float] = []
    servers: list[int] = []
    levels: list[float] = []
    keys: list[tuple[str, int, int, int]] = []  # workload, allocation, source, target index
    for name in sorted(allocations):
        view = table[name].view
        if view.is_job or not view.targets:
            continue
        cands = table[name]
        rates = np.array([s.rate for s in view.sources]) * view.design_factor
        for a_i, alloc in enumerate(allocations[name]):
            c = alloc.candidate
            row = np.array([int(cands.row[c])], dtype=np.int64)
            profile = view.profiles[int(cands.profile[c])]
            storage = feasibility.storage_latency(ctx, view, row)
            parts = feasibility.latency_parts(ctx, view, profile, row, storage)
            design = np.array(alloc.design_shares)
            load = float(rates @ design)
            for s in np.flatnonzero(design > 0).tolist():
                for t, (q, _) in enumerate(view.targets):
                    parts_list.append(parts.take(np.array([s])))
                    lam.append(load)
                    servers.append(alloc.replicas * profile.spec.concurrency)
                    levels.append(q)
                    keys.append((name, a_i, s, t))
    out: dict[str, list[SourceLatency]] = {name: [] for name in allocations}
    if not keys:
        return out
    merged = prediction.Parts(
        *(
            np.concatenate([getattr(p, f) for p in parts_list])
            for f in prediction.Parts.__dataclass_fields__
        )
    )
    wait_c, theta = prediction.wait_params(np.array(lam), np.array(servers, dtype=np.int64), merged)
    values = prediction.quantiles(np.array(levels), merged, wait_c, theta)
    grouped: dict[tuple[str, int, int], dict[int, float]] = {}
    for (name, a_i, s, t), value in zip(keys, values.tolist(), strict=True):
        grouped.setdefault((name, a_i, s), {})[t] = value
    for (name, a_i, s), by_target in grouped.items():
        out[name].append(SourceLatency(a_i, s, tuple(by_target[t] for t in sorted(by_target))))
    return out


def _check_latency(
    view: WorkloadView, cands: Candidates, allocs: list[Allocation], measured: list[SourceLatency]
) -> list[str]:
    problems = []
    for m in measured:
        for (q, target), value in zip(view.targets, m.values, strict=True):
            if value > target * (1.0 + 1e-6):
                alloc = allocs[m.allocation]
                problems.append(
                    f"workload {view.name}: q{q:g} from {view.sources[m.source].name} at candidate "
                    f"{alloc.candidate} is {value * 1e3:.1f} ms > {target * 1e3:.1f} ms"
                )
    return problems


def _check_capacity(
    ctx: PlanContext, table: dict[str, Candidates], allocations: dict[str, list[Allocation]]
) -> list[str]:
    state = CapacityState(ctx.index)
    problems = []
    for name in sorted(allocations):
        cands = table[name]
        for alloc in allocations[name]:
            row = int(cands.row[alloc.candidate])
            demand = cands.demand(alloc.candidate)
            nodes = int(ctx.index.row_nodes[row])
            if sum(k for _, k in alloc.nodes) != alloc.replicas:
                problems.append(
                    f"workload {name}: node packing of {ctx.index.row_label(row)} does not add up"
                )
            for node, count in alloc.nodes:
                if not 0 <= node < nodes or count <= 0:
                    problems.append(
                        f"workload {name}: invalid node {node} in {ctx.index.row_label(row)}"
                    )
                    continue
                state.take(int(state.start[row]) + node, count, demand)
            state.power_used[int(ctx.index.row_site[row])] += alloc.replicas * demand.power
    return problems + state.overcommitted()


def verify(
    ctx: PlanContext,
    table: dict[str, Candidates],
    allocations: dict[str, list[Allocation]],
) -> dict[str, list[SourceLatency]]:
    """Raise PlacementError on any violation; return the exact latencies it computed."""
    problems: list[str] = []
    latencies = design_latencies(ctx, table, allocations)
    for name in sorted(allocations):
        cands = table[name]
        view = cands.view
        allocs = allocations[name]
        for alloc in allocs:
            problems += _check_row(ctx, view, alloc, cands)
        problems += _check_coverage(ctx, view, cands, allocs)
        problems += _check_latency(view, cands, allocs, latencies[name])
    problems += _check_capacity(ctx, table, allocations)
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise PlacementError(
            f"the solver produced a plan that breaks {len(problems)} hard constraint(s); "
            f"refusing it (this is a bug, please report it):\n  {shown}{more}"
        )
    return latencies
