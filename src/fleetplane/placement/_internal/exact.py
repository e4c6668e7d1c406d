"""The exact solver: a MILP over whole-workload patterns, solved with HiGHS.

Variables: one binary per (workload, pattern) (patterns.py). Constraints:
each workload takes at most one pattern (exactly one for those greedy placed,
so exact never places fewer); per pool row the patterns' cpu, memory and
accelerators (per accelerator entry) fit the pool's totals; per site the
peak watts fit the power budget; in re-planning, the moves that count fit
``moveBudget`` and pinned workloads keep their current pattern. Objective:
the Scorer objective greedy minimises, plus move costs when re-planning
(spread over the policy's payback period: moves.py),
minus a large reward per workload placed.

Capacity in the MILP is pool-level; node-level packing (a replica cannot
span nodes) is then done by the same ``CapacityState`` greedy uses. A
workload whose chosen pattern does not pack takes its cheapest other pattern
that does, in the capacity the rest of the MILP plan left (``pack_repairing``);
if the result is not cheaper than greedy (or places fewer workloads),
greedy's plan is returned, so exact is never worse. HiGHS runs single-threaded with a fixed
seed: the same inputs give the same plan (within the same time limit and
machine speed; a time limit that cuts the search can differ across machines).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import highspy
import numpy as np
from scipy import sparse

from fleetplane.placement._internal import improve
from fleetplane.placement._internal.candidates import Allocation, Candidates
from fleetplane.placement._internal.capacity import CapacityState, Demand
from fleetplane.placement._internal.highs import quiet_highs
from fleetplane.placement._internal.patterns import Pattern, empty_fits, generate, pattern_of
from fleetplane.placement._internal.solve import SolverInput, SolverOutput, Unplaced

# Reward per workload placed, on top of ten times its dearest pattern: placing beats cost.
PLACE_REWARD = 1e4
# Relative gap at which HiGHS may stop before the time limit.
MIP_REL_GAP = 1e-4
# `auto` uses exact up to this many workloads (docs/placement.md has the measurement).
AUTO_EXACT_MAX_WORKLOADS = 2000


@dataclass
class Column:
    workload: int
    pattern: Pattern
    cost: float  # objective + move cost
    counts: bool  # a move that counts against the move budget


def _usage(
    cands: Candidates, pattern: Pattern, capacity: CapacityState
) -> dict[tuple[str, int, int], float]:
    use: dict[tuple[str, int, int], float] = {}
    index = capacity.index
    for a in pattern.allocations:
        d = cands.demand(a.candidate)
        row = int(cands.row[a.candidate])
        for key, value in (
            (("cpu", row, 0), d.cpu * a.replicas),
            (("mem", row, 0), d.memory * a.replicas),
            (("acc", row, d.entry), float(d.accelerators * a.replicas) if d.entry >= 0 else 0.0),
            (("pow", int(index.row_site[row]), 0), d.power * a.replicas),
        ):
            if value > 0:
                use[key] = use.get(key, 0.0) + value
    return use


def _limit(capacity: CapacityState, key: tuple[str, int, int]) -> float:
    """What is still free of one resource row: a pool's total (all nodes) or a site's power.

    On a fresh state this is the pool's capacity; the improvement pass solves
    sub-problems on a state where the rest of the plan is already packed.
    """
    kind, a, b = key
    if kind == "pow":
        return float(capacity.index.site_power_budget[a] - capacity.power_used[a])
    nodes = slice(int(capacity.start[a]), int(capacity.start[a + 1]))
    if kind == "cpu":
        return float(capacity.free_cpu[nodes].sum())
    if kind == "mem":
        return float(capacity.free_memory[nodes].sum())
    return float(capacity.free_acc[nodes, b].sum())


def _shape_fits(capacity: CapacityState, row: int, demand: Demand) -> int:
    """Replicas of one shape the pool's nodes still hold, node by node (power has its own row)."""
    return capacity.fit_count(row, replace(demand, power=0.0))


def _big(capacity: CapacityState, row: int, demand: Demand) -> list[tuple[str, int]]:
    """Dimensions in which one replica takes more than half a node: two never share one.

    As (dimension, column of the free arrays): "cpu", "memory" or "acc" with its entry.
    """
    index = capacity.index
    found = []
    if demand.cpu > index.row_cpu[row] / 2:
        found.append(("cpu", 0))
    if demand.memory > index.row_memory[row] / 2:
        found.append(("memory", 0))
    if demand.entry >= 0 and demand.accelerators > index.row_acc_count[row, demand.entry] / 2:
        found.append(("acc", demand.entry))
    return found


def _big_room(capacity: CapacityState, row: int, dim: tuple[str, int]) -> float:
    """Nodes with more than half a node free in ``dim``: the only ones a big replica can use."""
    index = capacity.index
    nodes = slice(int(capacity.start[row]), int(capacity.start[row + 1]))
    kind, entry = dim
    if kind == "cpu":
        free, whole = capacity.free_cpu[nodes], float(index.row_cpu[row])
    elif kind == "memory":
        free, whole = capacity.free_memory[nodes], float(index.row_memory[row])
    else:
        free, whole = capacity.free_acc[nodes, entry], float(index.row_acc_count[row, entry])
    return float(np.count_nonzero(free > whole / 2))


def _node_fit_rows(
    inp: SolverInput, columns: list[Column]
) -> list[tuple[float, list[tuple[int, float]]]]:
    """Node-level cuts the pool totals miss: (limit, [(column, replicas)]) per pool.

    * per replica shape: at most the replicas of that shape the pool's nodes
      still hold (nodes × replicas per node when nothing runs there yet);
    * per dimension: replicas taking more than half a node in it, of any
      shape, at most one per node that still has more than half of it free.

    Both hold for any packing, so they only remove plans that cannot be
    packed (two workloads that fit a pool's totals but not its nodes), and
    the bound stays a bound. Only cuts that could bind are returned.
    """
    found: dict[tuple[int, object], list[tuple[int, float]]] = {}
    limits: dict[tuple[int, object], float] = {}
    capacity = inp.capacity
    for j, col in enumerate(columns):
        cands = inp.table[col.workload]
        for a in col.pattern.allocations:
            d = cands.demand(a.candidate)
            row = int(cands.row[a.candidate])
            shape: tuple[int, object] = (row, (d.cpu, d.memory, d.entry, d.accelerators))
            if shape not in limits:
                limits[shape] = float(_shape_fits(capacity, row, d))
            keys = [shape]
            for dim in _big(capacity, row, d):
                if (row, dim) not in limits:
                    limits[(row, dim)] = _big_room(capacity, row, dim)
                keys.append((row, dim))
            for key in keys:
                found.setdefault(key, []).append((j, float(a.replicas)))
    return [
        (limits[key], entries)
        for key, entries in found.items()
        if sum(v for _, v in entries) > limits[key]
    ]


def _columns(inp: SolverInput, greedy_out: SolverOutput) -> tuple[list[Column], list[bool]]:
    """Every pattern of every workload, and whether the workload must be placed."""
    moves = inp.moves
    columns: list[Column] = []
    must: list[bool] = []
    for w, (cands, scorer, full) in enumerate(
        zip(inp.table, inp.scorers, inp.full_replicas, strict=True)
    ):
        name = cands.view.name
        found: list[Pattern] = []
        current = moves.current.get(name) if moves is not None else None
        if current is not None:
            found.append(current)
        if moves is not None and name in moves.pinned and current is not None:
            pass  # a pinned workload keeps its current pattern and nothing else
        else:
            if name in greedy_out.allocations:
                found.append(pattern_of(scorer, greedy_out.allocations[name], "greedy"))
            if moves is None or moves.broad or current is None or len(found) == 1:
                found += generate(cands, scorer, full, empty_fits(inp.capacity.index, cands))
        seen: set[frozenset[tuple[int, int, int]]] = set()
        for p in found:
            shape = frozenset(
                (a.candidate, a.replicas, int(a.shares[0] * 4) if a.shares else 0)
                for a in p.allocations
            )
            if shape in seen:
                continue
            if moves is not None and not moves.allowed(cands, p):
                continue
            seen.add(shape)
            extra = moves.amortised(cands, p) if moves is not None else 0.0
            counts = (
                moves is not None
                and p.origin != "current"
                and name in moves.previous
                and name not in moves.forced
            )
            columns.append(Column(w, p, p.cost + extra, counts))
        must.append(moves is None and name in greedy_out.allocations)
    return columns, must


def milp(
    inp: SolverInput,
    columns: list[Column],
    must: list[bool],
    start: list[int],
    max_nodes: int | None = None,
) -> tuple[list[int] | None, float | None, float | None, str]:
    """Solve; returns (chosen column per workload or -1, primal, dual bound, status).

    Capacity rows are what ``inp.capacity`` still has free (all of it for a
    plan from scratch). ``max_nodes`` caps the branch-and-bound nodes: a
    limit in work rather than seconds, so a capped solve stays deterministic.
    """
    n_w = len(inp.table)
    # Only workloads that may stay unplaced get a reward; the others are bound to one pattern,
    # which keeps the objective's scale (and HiGHS's relative gap) that of the money.
    reward = np.zeros(n_w)
    for col in columns:
        if not must[col.workload]:
            reward[col.workload] = max(reward[col.workload], 10.0 * abs(col.cost) + PLACE_REWARD)
    cost = np.array([col.cost - reward[col.workload] for col in columns])
    rows: list[int] = []
    cols: list[int] = []
    vals: list[float] = []
    lower: list[float] = []
    upper: list[float] = []
    for w in range(n_w):
        lower.append(1.0 if must[w] else 0.0)
        upper.append(1.0)
    resource_row: dict[tuple[str, int, int], int] = {}
    for j, col in enumerate(columns):
        rows.append(col.workload)
        cols.append(j)
        vals.append(1.0)
        for key, value in _usage(inp.table[col.workload], col.pattern, inp.capacity).items():
            limit = _limit(inp.capacity, key)
            if not np.isfinite(limit):
                continue
            r = resource_row.get(key)
            if r is None:
                r = len(lower)
                resource_row[key] = r
                lower.append(-highspy.kHighsInf)
                upper.append(limit)
            rows.append(r)
            cols.append(j)
            vals.append(value)
    for limit, entries in _node_fit_rows(inp, columns):
        r = len(lower)
        lower.append(-highspy.kHighsInf)
        upper.append(limit)
        for j, replicas in entries:
            rows.append(r)
            cols.append(j)
            vals.append(replicas)
    moves = inp.moves
    if moves is not None and moves.budget is not None:
        r = len(lower)
        lower.append(-highspy.kHighsInf)
        upper.append(float(moves.budget))
        for j, col in enumerate(columns):
            if col.counts:
                rows.append(r)
                cols.append(j)
                vals.append(1.0)
    matrix = sparse.csc_matrix((vals, (rows, cols)), shape=(len(lower), len(columns)))
    h = quiet_highs()
    h.setOptionValue("time_limit", float(inp.time_limit))
    h.setOptionValue("random_seed", int(inp.seed))
    h.setOptionValue("mip_rel_gap", MIP_REL_GAP)
    if max_nodes is not None:
        h.setOptionValue("mip_max_nodes", int(max_nodes))
    lp = highspy.HighsLp()
    lp.num_col_ = len(columns)
    lp.num_row_ = len(lower)
    lp.col_cost_ = cost
    lp.col_lower_ = np.zeros(len(columns))
    lp.col_upper_ = np.ones(len(columns))
    lp.row_lower_ = np.array(lower)
    lp.row_upper_ = np.array(upper)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = matrix.indptr
    lp.a_matrix_.index_ = matrix.indices
    lp.a_matrix_.value_ = matrix.data
    lp.integrality_ = [highspy.HighsVarType.kInteger] * len(columns)
    h.passModel(lp)
    if start:
        h.setSolution(_solution(len(columns), start))
    h.run()
    info = h.getInfo()
    x = np.asarray(h.getSolution().col_value)
    if info.primal_solution_status == 2 and abs(float(cost @ x) - info.objective_function_value) > (
        1e-7 * max(1.0, abs(info.objective_function_value))
    ):
        # HiGHS 1.16 with presolve can hand back the user's start instead of the better
        # incumbent it reports; solve again without the start (measured on hybrid-hpc).
        h.clearSolver()
        h.run()
        info = h.getInfo()
        x = np.asarray(h.getSolution().col_value)
    status = h.modelStatusToString(h.getModelStatus())
    if info.primal_solution_status != 2:  # no feasible solution found
        return None, None, None, status
    chosen = [-1] * n_w
    for j in np.flatnonzero(x > 0.5).tolist():
        chosen[columns[j].workload] = j
    primal = float(sum(columns[j].cost for j in chosen if j >= 0))
    offset = float(sum(reward[w] for w in range(n_w) if chosen[w] >= 0))
    return chosen, primal, info.mip_dual_bound + offset, status


def _solution(n: int, start: list[int]) -> highspy.HighsSolution:
    sol = highspy.HighsSolution()
    x = np.zeros(n)
    x[[j for j in start if j >= 0]] = 1.0
    sol.col_value = list(x)
    sol.value_valid = True
    return sol


def _place(
    inp: SolverInput, capacity: CapacityState, w: int, pattern: Pattern
) -> list[Allocation] | None:
    """Pack one workload's pattern node by node; on failure give back what it took."""
    cands = inp.table[w]
    placed: list[Allocation] = []
    for a in pattern.allocations:
        nodes = capacity.place(int(cands.row[a.candidate]), a.replicas, cands.demand(a.candidate))
        if nodes is None:
            for done in placed:
                capacity.release(
                    int(cands.row[done.candidate]), done.nodes, cands.demand(done.candidate)
                )
            return None
        placed.append(replace(a, nodes=tuple(nodes)))
    return placed


def _pack(
    inp: SolverInput, capacity: CapacityState, chosen: dict[int, Pattern]
) -> dict[int, list[Allocation]] | None:
    """Pack the chosen patterns node by node, biggest first; None if one does not fit."""
    packed, failed = pack_each(inp, capacity, chosen)
    return None if failed else packed


def pack_each(
    inp: SolverInput, capacity: CapacityState, chosen: dict[int, Pattern]
) -> tuple[dict[int, list[Allocation]], list[int]]:
    """Pack every pattern that fits, biggest replicas first; and the workloads that did not.

    First-fit decreasing: a replica's size is the largest fraction of one
    node it takes (cpu, memory or accelerators), so replicas that need a
    nearly empty node are packed before small ones fragment the nodes
    (measured: ordering by total cpu left an 8-GPU task without a node that
    a 4-cpu replica had been put on first).
    """
    index = capacity.index

    def size(w: int) -> tuple[float, float]:
        cands = inp.table[w]
        biggest, total = 0.0, 0.0
        for a in chosen[w].allocations:
            d = cands.demand(a.candidate)
            row = int(cands.row[a.candidate])
            parts = [d.cpu / index.row_cpu[row], d.memory / index.row_memory[row]]
            if d.entry >= 0 and d.accelerators > 0:
                parts.append(d.accelerators / max(float(index.row_acc_count[row, d.entry]), 1e-12))
            biggest = max(biggest, *parts)
            total += d.cpu * a.replicas
        return biggest, total

    out: dict[int, list[Allocation]] = {}
    failed: list[int] = []
    sizes = {w: size(w) for w in chosen}
    for w in sorted(chosen, key=lambda w: (-sizes[w][0], -sizes[w][1], w)):
        placed = _place(inp, capacity, w, chosen[w])
        if placed is None:
            failed.append(w)
        else:
            out[w] = placed
    return out, failed


@dataclass
class _Repaired:
    allocations: dict[int, list[Allocation]]
    patterns: dict[int, Pattern]
    repaired: int  # workloads whose MILP pattern did not pack and that took another one


def pack_repairing(
    inp: SolverInput, capacity: CapacityState, chosen: dict[int, Pattern], columns: list[Column]
) -> _Repaired:
    """Pack the MILP's patterns; re-place only the workloads whose pattern does not pack.

    The pool-level MILP can choose patterns that fit a pool's totals but not
    its nodes (fragmentation). Those workloads alone take, in the capacity the
    others left, their cheapest other pattern that packs; the rest of the
    MILP plan stands. A workload with no such pattern stays unplaced (the
    caller then compares with greedy's plan).
    """
    packed, failed = pack_each(inp, capacity, chosen)
    patterns = {w: chosen[w] for w in packed}
    by_workload: dict[int, list[Pattern]] = {}
    for col in columns:
        by_workload.setdefault(col.workload, []).append(col.pattern)
    for w in failed:
        for pattern in sorted(by_workload.get(w, []), key=lambda p: p.cost):
            if pattern is chosen[w]:
                continue
            placed = _place(inp, capacity, w, pattern)
            if placed is not None:
                packed[w] = placed
                patterns[w] = pattern
                break
    repaired = sum(1 for w in failed if w in packed)
    return _Repaired(packed, patterns, repaired)


def _start(columns: list[Column], n_w: int) -> list[int]:
    """Warm start: the current pattern where there is one, else greedy's."""
    start = [-1] * n_w
    for j, col in enumerate(columns):
        origin = col.pattern.origin
        w = col.workload
        if origin == "current" or (origin == "greedy" and start[w] < 0):
            start[w] = j
    return start


def solve(inp: SolverInput) -> SolverOutput:
    began = time.perf_counter()
    g_cap = inp.capacity.copy()
    greedy_out = improve.solve(replace(inp, capacity=g_cap, progress=None))
    columns, must = _columns(inp, greedy_out)
    n_w = len(inp.table)
    start = _start(columns, n_w)
    remaining = max(inp.time_limit - (time.perf_counter() - began), 1.0)
    chosen, primal, bound, status = milp(replace(inp, time_limit=remaining), columns, must, start)
    names = [c.view.name for c in inp.table]
    if inp.moves is None:
        return _choose_plain(inp, greedy_out, g_cap, columns, chosen, bound, status, names)
    return _choose_replan(inp, greedy_out, columns, chosen, primal, bound, status, names)


def _gap(objective: float, bound: float | None) -> float | None:
    if bound is None:
        return None
    return max(objective - bound, 0.0) / max(abs(objective), 1e-9)


def _choose_plain(
    inp: SolverInput,
    greedy_out: SolverOutput,
    g_cap: CapacityState,
    columns: list[Column],
    chosen: list[int] | None,
    bound: float | None,
    status: str,
    names: list[str],
) -> SolverOutput:
    fallback = replace(greedy_out, status=f"greedy ({status})")
    if chosen is not None:
        patterns = {w: columns[j].pattern for w, j in enumerate(chosen) if j >= 0}
        e_cap = inp.capacity.copy()
        done = pack_repairing(inp, e_cap, patterns, columns)
        objective = sum(p.cost for p in done.patterns.values())
        n_greedy = len(greedy_out.allocations)
        better = len(done.allocations) > n_greedy or (
            len(done.allocations) == n_greedy and objective < greedy_out.objective - 1e-6
        )
        if better:
            inp.capacity.adopt(e_cap)
            solved = "optimal" if status == "Optimal" else status.lower()
            out = SolverOutput(
                status=f"{solved}, {done.repaired} repaired after node packing"
                if done.repaired
                else solved
            )
            for w in sorted(done.allocations):
                out.allocations[names[w]] = done.allocations[w]
                out.order.append(names[w])
            out.unplaced = {
                n: u for n, u in greedy_out.unplaced.items() if n not in out.allocations
            }
            out.objective = objective
            out.bound = bound
            out.optimality_gap = _gap(objective, bound)
            return out
        milp_better = (
            sum(columns[j].pattern.cost for j in chosen if j >= 0) < (greedy_out.objective - 1e-6)
            or len(patterns) > n_greedy
        )
        fallback.status = (
            "optimal" if status == "Optimal" and not milp_better else f"greedy ({status})"
        )
    inp.capacity.adopt(g_cap)
    fallback.bound = bound
    fallback.optimality_gap = _gap(greedy_out.objective, bound)
    return fallback


def _choose_replan(
    inp: SolverInput,
    greedy_out: SolverOutput,
    columns: list[Column],
    chosen: list[int] | None,
    primal: float | None,
    bound: float | None,
    status: str,
    names: list[str],
) -> SolverOutput:
    assert inp.moves is not None
    if chosen is None:
        chosen = _start(columns, len(names))
    patterns = {w: columns[j].pattern for w, j in enumerate(chosen) if j >= 0}
    capacity = inp.capacity.copy()
    packed = _pack(inp, capacity, patterns)
    if packed is None:
        packed = {}
        capacity = inp.capacity.copy()
        for w in sorted(patterns):
            one = _pack(inp, capacity, {w: patterns[w]})
            if one is not None:
                packed.update(one)
    inp.capacity.adopt(capacity)
    out = SolverOutput(status="optimal" if status == "Optimal" else status.lower())
    for w in sorted(packed):
        out.allocations[names[w]] = packed[w]
        out.order.append(names[w])
    for name in names:
        if name in out.allocations:
            continue
        out.unplaced[name] = greedy_out.unplaced.get(name) or Unplaced(
            "capacity",
            "no option left within the move budget, the cordoned sites and the capacity "
            "the kept workloads hold",
        )
    out.objective = sum(patterns[w].cost for w in packed)
    out.bound = bound
    out.optimality_gap = _gap(primal, bound) if primal is not None else None
    return out


def solve_auto(inp: SolverInput) -> SolverOutput:
    """Exact for fleets up to AUTO_EXACT_MAX_WORKLOADS workloads, greedy beyond."""
    if len(inp.table) <= AUTO_EXACT_MAX_WORKLOADS or inp.moves is not None:
        return solve(inp)
    return improve.solve(inp)
