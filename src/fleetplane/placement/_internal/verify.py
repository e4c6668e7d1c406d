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
from fleetplane.placement._internal.fleet_index import BoolArray, FloatArray, IntArray
from fleetplane.placement._internal.solve import needs_spread
from fleetplane.placement._internal.workload_view import WorkloadView


@dataclass(frozen=True)
class SourceLatency:
    """Exact quantiles (by target) of one source's requests at one allocation, at design load."""

    allocation: int
    source: int
    values: tuple[float, ...]  # one per target of the workload, same order


_ROW_STAGES = (
    ("site", feasibility._site),
    ("hardware", feasibility._hardware),
    ("image", feasibility._image),
    ("storage", feasibility._storage),
    ("capacity", feasibility._capacity),
    ("power", feasibility._power),
    ("deadline", feasibility._deadline),
)


def _check_rows(
    ctx: PlanContext, view: WorkloadView, allocs: list[Allocation], cands: Candidates
) -> list[str]:
    """Every filter on each allocation's (pool, profile), for all of a workload's at once.

    The filters run once per profile over the rows of the allocations using
    it; the problems are reported per allocation, in allocation order.
    """
    rows = [int(cands.row[a.candidate]) for a in allocs]
    profiles = [int(cands.profile[a.candidate]) for a in allocs]
    failed: list[list[str]] = [[] for _ in allocs]
    required = [True] * len(allocs)
    members: dict[int, list[int]] = {}
    for i, p in enumerate(profiles):
        members.setdefault(p, []).append(i)
    for p, mine in members.items():
        profile = view.profiles[p]
        some = np.array([rows[i] for i in mine], dtype=np.int64)
        for key, stage in _ROW_STAGES:
            ok, _ = stage(ctx, view, profile, some)
            for j in _failing(ok, some.size):
                failed[mine[j]].append(key)
        ok, _ = ctx.rules.require(view, profile, some)
        for j in _failing(ok, some.size):
            required[mine[j]] = False
    every = np.array(rows, dtype=np.int64)
    if view.sources:
        zone_ok = feasibility.source_zone_ok(ctx, view, every)
        reach = feasibility.source_reachable(ctx, view, every)
    allowed = view.workload.spec.residency
    splits = view.is_job and not needs_spread(cands)
    low = 1 if splits else view.min_replicas
    problems = []
    for i, alloc in enumerate(allocs):
        row = rows[i]
        profile = view.profiles[profiles[i]]
        where = f"workload {view.name} at {ctx.index.row_label(row)} ({profile.hardware})"
        problems += [f"{where}: fails the {key} filter" for key in failed[i]]
        zone = ctx.index.site_of_row(row).spec.residency_zone
        if allowed and zone not in allowed:
            problems.append(f"{where}: zone {zone} is outside the workload's residency {allowed}")
        if view.sources:
            for s, d in enumerate(alloc.design_shares):
                if d <= 0:
                    continue
                if not zone_ok[s, i]:
                    problems.append(f"{where}: data of {view.sources[s].name} would leave its zone")
                if not reach[s, i]:
                    problems.append(f"{where}: no network path from {view.sources[s].name}")
        if not required[i]:
            problems.append(f"{where}: a require rule of the policy does not hold")
        if not low <= alloc.replicas <= view.max_replicas:
            problems.append(
                f"{where}: {alloc.replicas} replicas outside [{low}, {view.max_replicas}]"
            )
    return problems


def _failing(ok: BoolArray | bool, size: int) -> list[int]:
    """Positions where a stage's answer for ``size`` rows (an array, or one value for all) fails."""
    if isinstance(ok, np.ndarray) and ok.shape == (size,):
        # Most answers are all true: one reduction, no per-row Python.
        return [] if ok.all() else np.flatnonzero(~ok.astype(bool)).tolist()
    every = np.broadcast_to(np.asarray(ok, dtype=bool), (size,))
    return np.flatnonzero(~every).tolist()


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


@dataclass(frozen=True)
class DesignPaths:
    """One row per (workload, allocation, source served), at design load.

    Design load is the peak of every source the allocation must absorb — for
    spread workloads, with the other failure domain lost. Built from the
    fleet (network, pools, profiles), not from the solver's candidate table.
    """

    workload: tuple[str, ...]
    allocation: IntArray
    source: IntArray
    parts: prediction.Parts
    lam: FloatArray
    servers: IntArray

    @property
    def size(self) -> int:
        return len(self.workload)


def design_paths(
    ctx: PlanContext, table: dict[str, Candidates], allocations: dict[str, list[Allocation]]
) -> DesignPaths:
    """Every (allocation, source it serves) of request workloads with targets, at design load."""
    names: list[str] = []
    alloc_idx: list[int] = []
    source_idx: list[int] = []
    lam: list[float] = []
    servers: list[int] = []
    source_site: list[int] = []
    rows: list[int] = []
    storage: list[float] = []
    svc_mean: list[float] = []
    svc_cv: list[float] = []
    for name in sorted(allocations):
        view = table[name].view
        if view.is_job or not view.targets:
            continue
        cands = table[name]
        rates = np.array([s.rate for s in view.sources]) * view.design_factor
        allocs = allocations[name]
        where = [int(cands.row[a.candidate]) for a in allocs]
        stored = feasibility.storage_latency(ctx, view, np.array(where, dtype=np.int64)).tolist()
        for a_i, alloc in enumerate(allocs):
            profile = view.profiles[int(cands.profile[alloc.candidate])]
            service = profile.service
            assert service is not None  # request workloads have service times
            served = [s for s, share in enumerate(alloc.design_shares) if share > 0]
            count = len(served)
            names += [name] * count
            alloc_idx += [a_i] * count
            source_idx += served
            lam += [float(rates @ np.array(alloc.design_shares))] * count
            servers += [alloc.replicas * profile.spec.concurrency] * count
            source_site += [view.sources[s].site for s in served]
            rows += [where[a_i]] * count
            storage += [stored[a_i]] * count
            svc_mean += [service.mean] * count
            svc_cv += [service.cv] * count
    return DesignPaths(
        tuple(names),
        np.array(alloc_idx, dtype=np.int64),
        np.array(source_idx, dtype=np.int64),
        feasibility.path_parts(
            ctx,
            np.array(source_site, dtype=np.int64),
            np.array(rows, dtype=np.int64),
            np.array(storage, dtype=np.float64),
            np.array(svc_mean, dtype=np.float64),
            np.array(svc_cv, dtype=np.float64),
        ),
        np.array(lam, dtype=np.float64),
        np.array(servers, dtype=np.int64),
    )


def _check_latency(paths: DesignPaths, table: dict[str, Candidates]) -> list[str]:
    """Every path meets every target: proven by the bound, or else computed exactly."""
    rows: list[int] = []
    levels: list[float] = []
    targets: list[float] = []
    for i, name in enumerate(paths.workload):
        for level, limit in table[name].view.targets:
            rows.append(i)
            levels.append(level)
            targets.append(limit)
    if not rows:
        return []
    idx = np.array(rows, dtype=np.int64)
    q = np.array(levels)
    target = np.array(targets)
    parts = paths.parts.take(idx)
    proven = prediction.bound_holds(paths.lam[idx], paths.servers[idx], q, target, parts)
    problems = []
    unproven = np.flatnonzero(~proven)
    if unproven.size:
        sub = parts.take(unproven)
        c, theta = prediction.wait_params(
            paths.lam[idx[unproven]], paths.servers[idx[unproven]], sub
        )
        values = prediction.quantiles(q[unproven], sub, c, theta)
        for j, value in zip(unproven.tolist(), values.tolist(), strict=True):
            if value > target[j] * (1.0 + 1e-6):
                i = int(idx[j])
                name = paths.workload[i]
                view = table[name].view
                problems.append(
                    f"workload {name}: q{q[j]:g} from {view.sources[int(paths.source[i])].name} "
                    f"at allocation {int(paths.allocation[i])} is {value * 1e3:.1f} ms "
                    f"> {target[j] * 1e3:.1f} ms"
                )
    return problems


def report_latencies(
    paths: DesignPaths,
    table: dict[str, Candidates],
    levels: dict[str, tuple[float, ...]],
    budget: int,
) -> dict[str, list[SourceLatency]]:
    """Exact quantiles at each workload's reported levels, for its paths.

    Every path when the whole plan needs at most ``budget`` evaluations,
    otherwise each workload's tightest path only (smallest share of its
    latency target left for queueing): the one its predicted percentiles
    and its SLO check hinge on.
    """
    chosen: list[int] = []
    total = sum(len(levels[name]) for name in paths.workload)
    if total <= budget:
        chosen = list(range(paths.size))
    else:
        worst: dict[str, tuple[float, int]] = {}
        slack = _slack(paths, table)
        for i, name in enumerate(paths.workload):
            if name not in worst or slack[i] < worst[name][0]:
                worst[name] = (float(slack[i]), i)
        chosen = sorted(i for _, i in worst.values())
    rows: list[int] = []
    qs: list[float] = []
    for i in chosen:
        for q in levels[paths.workload[i]]:
            rows.append(i)
            qs.append(q)
    out: dict[str, list[SourceLatency]] = {}
    if not rows:
        return out
    idx = np.array(rows, dtype=np.int64)
    parts = paths.parts.take(idx)
    c, theta = prediction.wait_params(paths.lam[idx], paths.servers[idx], parts)
    values = prediction.quantiles(np.array(qs), parts, c, theta)
    position = 0
    for i in chosen:
        name = paths.workload[i]
        count = len(levels[name])
        out.setdefault(name, []).append(
            SourceLatency(
                int(paths.allocation[i]),
                int(paths.source[i]),
                tuple(values[position : position + count].tolist()),
            )
        )
        position += count
    return out


def _slack(paths: DesignPaths, table: dict[str, Candidates]) -> FloatArray:
    """Per path: the share of its strictest target left after round trip, storage, service."""
    strictest = {
        name: min(table[name].view.targets, key=lambda t: t[1]) for name in set(paths.workload)
    }
    q = np.array([strictest[name][0] for name in paths.workload])
    target = np.array([strictest[name][1] for name in paths.workload])
    parts = paths.parts
    base = (
        parts.storage
        + prediction.rtt_quantile(q, parts)
        + prediction.service_quantile(q, parts.svc_mean, parts.svc_cv)
    )
    return np.asarray((target - base) / target, dtype=np.float64)


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
) -> DesignPaths:
    """Raise PlacementError on any violation; return the design-load paths it checked."""
    problems: list[str] = []
    paths = design_paths(ctx, table, allocations)
    for name in sorted(allocations):
        cands = table[name]
        view = cands.view
        allocs = allocations[name]
        problems += _check_rows(ctx, view, allocs, cands)
        problems += _check_coverage(ctx, view, cands, allocs)
    problems += _check_latency(paths, table)
    problems += _check_capacity(ctx, table, allocations)
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise PlacementError(
            f"the solver produced a plan that breaks {len(problems)} hard constraint(s); "
            f"refusing it (this is a bug, please report it):\n  {shown}{more}"
        )
    return paths
