"""Whole-workload patterns: the columns the exact solver chooses among.

A pattern is one complete way to run a workload — every allocation it needs
(candidate, replicas, source shares) — priced with the same ``Scorer``
objective greedy minimises and sized with the same ``full_replicas`` and
``sizing`` greedy uses. Nothing here re-derives feasibility or cost: every
pattern is built from the candidate table.

Per workload the exact solver sees:

* the greedy solver's own allocations (so its plan is always a feasible
  start, and multi-site stars that one candidate cannot serve are available);
* every candidate able to serve all data sources alone (a single "full star",
  or a job's tasks on one candidate), the ``SINGLES`` cheapest;
* for availability ≥ 99.9%, pairs of such candidates in two failure domains,
  each sized for the whole peak (greedy's spread rule), built from the
  ``PAIR_SIDE`` cheapest candidates on each side;
* in re-planning, the current placement (moves.py).

The MILP is exact over this set of patterns and a pool-level (aggregate)
capacity model; docs/placement.md says what that bound does and does not prove.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fleetplane.placement._internal.candidates import Allocation, Candidates
from fleetplane.placement._internal.fleet_index import FleetIndex, FloatArray, IntArray
from fleetplane.placement._internal.scoring import Scorer
from fleetplane.placement._internal.solve import needs_spread

# How many single-candidate patterns per workload, cheapest first.
SINGLES = 24
# How many candidates per side are paired for spread workloads (PAIR_SIDE² pairs at most).
PAIR_SIDE = 8
# As in CapacityState: a replica that fills a node exactly still fits despite rounding.
_EPS = 1e-9


@dataclass(frozen=True)
class Pattern:
    allocations: tuple[Allocation, ...]
    cost: float  # the solver objective (Scorer), money per month
    origin: str  # "greedy", "single", "pair" or "current"

    def key(self, cands: Candidates) -> frozenset[tuple[int, int]]:
        """(pool row, profile) pairs it occupies: two patterns on the same places are one move."""
        return frozenset(
            (int(cands.row[a.candidate]), int(cands.profile[a.candidate])) for a in self.allocations
        )


def allocation_cost(scorer: Scorer, alloc: Allocation) -> float:
    shares = np.array(alloc.shares, dtype=np.float64)[:, None]
    value = scorer.objective(
        np.array([alloc.candidate]), np.array([alloc.replicas]), shares, alloc.weight
    )
    return float(value[0])


def pattern_of(
    scorer: Scorer, allocs: list[Allocation] | tuple[Allocation, ...], origin: str
) -> Pattern:
    stripped = tuple(
        Allocation(a.candidate, a.replicas, a.shares, a.design_shares, (), a.weight) for a in allocs
    )
    return Pattern(stripped, sum(allocation_cost(scorer, a) for a in stripped), origin)


def _single_alloc(cands: Candidates, scorer: Scorer, c: int, n: int, half: bool) -> Allocation:
    n_src = len(cands.view.sources)
    frac = 0.5 if half else 1.0
    shares = tuple([frac] * n_src)
    if cands.view.is_job or not n_src:
        # A spread job runs in full on each side: half the traffic, designed for all of it.
        return Allocation(c, n, shares, tuple([1.0] * n_src), (), frac)
    weight = float(scorer.source_weight.sum() * frac)
    return Allocation(c, n, shares, tuple([1.0] * n_src), (), weight)


def _whole(cands: Candidates, full: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidates able to take the whole workload alone, and their replicas."""
    view = cands.view
    if view.is_job or not len(view.sources):
        n = np.full(cands.size, view.min_replicas, dtype=np.int64)
        return np.arange(cands.size), n
    ok = cands.source_ok.all(axis=0) & (full > 0) & (full <= view.max_replicas)
    idx = np.flatnonzero(ok)
    return idx, full[idx].astype(np.int64)


def empty_fits(index: FleetIndex, cands: Candidates) -> IntArray:
    """Per candidate: replicas its pool takes when nothing runs on it (nodes and site power).

    The vectorised form of ``CapacityState.fit_count`` on an untouched pool.
    """
    view = cands.view
    rows = cands.row
    fits = np.minimum(
        np.floor((index.row_cpu[rows] + _EPS) / view.cpu),
        np.floor((index.row_memory[rows] + _EPS) / view.memory),
    )
    per_profile = np.array(
        [view.accelerators_per_replica(p) for p in view.profiles], dtype=np.float64
    )
    acc = per_profile[cands.profile] if per_profile.size else np.zeros(cands.size)
    uses = (cands.entry >= 0) & (acc > 0)
    if uses.any():
        have = index.row_acc_count[rows[uses], cands.entry[uses]]
        fits[uses] = np.minimum(fits[uses], np.floor(have / acc[uses]))
    count = np.maximum(fits, 0) * index.row_nodes[rows]
    power = cands.rates.peak_power
    budget = index.site_power_budget[cands.site]
    limited = (power > 0) & np.isfinite(budget)
    if limited.any():
        count[limited] = np.minimum(
            count[limited], np.floor((budget[limited] + _EPS) / power[limited])
        )
    return np.maximum(count, 0).astype(np.int64)


def whole_costs(
    cands: Candidates, scorer: Scorer, full: np.ndarray, fits: np.ndarray, spread: bool
) -> tuple[IntArray, IntArray, FloatArray]:
    """Candidates able to run the whole workload alone in an empty pool, replicas, and cost.

    The cost is what ``allocation_cost`` gives for ``_single_alloc`` (at half
    shares for one side of a spread pair), computed for all candidates at once.
    """
    idx, reps = _whole(cands, full)
    keep = reps <= fits[idx]
    idx, reps = idx[keep], reps[keep]
    frac = 0.5 if spread else 1.0
    cost = reps * scorer.per_replica[idx] + scorer.per_site[idx]
    view = cands.view
    if view.is_job or not len(view.sources):
        cost = cost + frac * scorer.per_share[idx]
    else:
        cost = cost + float(scorer.source_weight.sum() * frac) * scorer.per_share[idx]
    if scorer.per_source.shape[0] and idx.size:
        cost = cost + frac * scorer.per_source[:, idx].sum(axis=0)
    return idx, reps, np.asarray(cost, dtype=np.float64)


def cheapest_whole(
    cands: Candidates, scorer: Scorer, full: np.ndarray, fits: np.ndarray
) -> float | None:
    """The cheapest single (or, when spread, paired) whole-workload pattern's cost; None if none.

    A spread pair's cheapest member is always the cheapest candidate overall:
    swapping either member of any pair for it keeps two domains (it differs
    from at least one of them) and costs no more.
    """
    spread = needs_spread(cands)
    idx, _, cost = whole_costs(cands, scorer, full, fits, spread)
    if not idx.size:
        return None
    best = int(np.argmin(cost))
    if not spread:
        return float(cost[best])
    other = cands.domain[idx] != cands.domain[idx[best]]
    if not other.any():
        return None
    return float(cost[best] + cost[other].min())


def generate(
    cands: Candidates, scorer: Scorer, full: np.ndarray, fits: np.ndarray
) -> list[Pattern]:
    """Single and paired patterns for one workload; ``fits[c]``: replicas an empty pool takes."""
    spread = needs_spread(cands)
    idx, reps, costs = whole_costs(cands, scorer, full, fits, spread)
    if not idx.size:
        return []
    order = np.lexsort((idx, costs))
    if not spread:
        return [
            Pattern(
                (_single_alloc(cands, scorer, int(idx[j]), int(reps[j]), False),),
                float(costs[j]),
                "single",
            )
            for j in order[:SINGLES].tolist()
        ]
    side = order[: PAIR_SIDE * 3].tolist()
    allocs = {j: _single_alloc(cands, scorer, int(idx[j]), int(reps[j]), True) for j in side}
    out: list[Pattern] = []
    seen: set[frozenset[int]] = set()
    for a in side[:PAIR_SIDE]:
        partners = [b for b in side if cands.domain[idx[b]] != cands.domain[idx[a]]][:PAIR_SIDE]
        for b in partners:
            pair = frozenset((a, b))
            if pair in seen:
                continue
            seen.add(pair)
            out.append(Pattern((allocs[a], allocs[b]), float(costs[a] + costs[b]), "pair"))
    return out


def cheapest_whole_many(
    index: FleetIndex,
    table: list[Candidates],
    scorers: list[Scorer],
    fulls: list[np.ndarray],
    workloads: list[int],
) -> dict[int, float]:
    """``cheapest_whole`` for many workloads in one vectorised pass (those that have one).

    Per workload only the candidate selection and two reductions run in
    Python; fits and costs of every candidate of every workload are computed
    on concatenated arrays, which is what makes it affordable on 20,000
    workloads.
    """
    picked: list[int] = []
    idx_parts: list[np.ndarray] = []
    reps_parts: list[np.ndarray] = []
    cost_parts: list[np.ndarray] = []
    rows, entries, accs, powers, sites = [], [], [], [], []
    cpus, mems = [], []
    for w in workloads:
        cands, scorer = table[w], scorers[w]
        view = cands.view
        idx, reps = _whole(cands, fulls[w])
        if not idx.size:
            continue
        frac = 0.5 if needs_spread(cands) else 1.0
        plain = view.is_job or not len(view.sources)
        alpha = frac if plain else float(scorer.source_weight.sum()) * frac
        cost = reps * scorer.per_replica[idx] + scorer.per_site[idx] + alpha * scorer.per_share[idx]
        if scorer.per_source.shape[0]:
            cost += frac * scorer.per_source.sum(axis=0)[idx]
        per_profile = [float(view.accelerators_per_replica(p)) for p in view.profiles] or [0.0]
        picked.append(w)
        idx_parts.append(idx)
        reps_parts.append(reps)
        cost_parts.append(cost)
        rows.append(cands.row[idx])
        entries.append(cands.entry[idx])
        accs.append(np.asarray(per_profile)[cands.profile[idx]])
        powers.append(cands.rates.peak_power[idx])
        sites.append(cands.site[idx])
        cpus.append(view.cpu)
        mems.append(view.memory)
    if not picked:
        return {}
    sizes = np.array([p.size for p in idx_parts])
    row = np.concatenate(rows)
    entry = np.concatenate(entries)
    acc = np.concatenate(accs)
    fits = np.minimum(
        np.floor((index.row_cpu[row] + _EPS) / np.repeat(cpus, sizes)),
        np.floor((index.row_memory[row] + _EPS) / np.repeat(mems, sizes)),
    )
    uses = (entry >= 0) & (acc > 0)
    if uses.any():
        have = index.row_acc_count[row[uses], entry[uses]]
        fits[uses] = np.minimum(fits[uses], np.floor(have / acc[uses]))
    count = np.maximum(fits, 0) * index.row_nodes[row]
    budget = index.site_power_budget[np.concatenate(sites)]
    power = np.concatenate(powers)
    limited = (power > 0) & np.isfinite(budget)
    count[limited] = np.minimum(count[limited], np.floor((budget[limited] + _EPS) / power[limited]))
    cost = np.where(np.concatenate(reps_parts) <= count, np.concatenate(cost_parts), np.inf)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    best = np.minimum.reduceat(cost, starts)
    found: dict[int, float] = {}
    for k, w in enumerate(picked):
        if not np.isfinite(best[k]):
            continue
        cands = table[w]
        if not needs_spread(cands):
            found[w] = float(best[k])
            continue
        mine = cost[starts[k] : starts[k] + sizes[k]]
        domains = cands.domain[idx_parts[k]]
        first = int(np.argmin(mine))
        other = mine[domains != domains[first]]
        if other.size and np.isfinite(other.min()):
            found[w] = float(mine[first] + other.min())
    return found
