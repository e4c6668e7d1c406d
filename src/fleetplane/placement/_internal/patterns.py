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
from fleetplane.placement._internal.scoring import Scorer
from fleetplane.placement._internal.solve import needs_spread

# How many single-candidate patterns per workload, cheapest first.
SINGLES = 24
# How many candidates per side are paired for spread workloads (PAIR_SIDE² pairs at most).
PAIR_SIDE = 8


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
        return Allocation(c, n, shares, shares, (), frac)
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


def generate(
    cands: Candidates, scorer: Scorer, full: np.ndarray, fits: np.ndarray
) -> list[Pattern]:
    """Single and paired patterns for one workload; ``fits[c]``: replicas an empty pool takes."""
    idx, reps = _whole(cands, full)
    keep = reps <= fits[idx]
    idx, reps = idx[keep], reps[keep]
    if not idx.size:
        return []
    spread = needs_spread(cands)
    allocs = [
        _single_alloc(cands, scorer, int(c), int(n), spread) for c, n in zip(idx, reps, strict=True)
    ]
    costs = np.array([allocation_cost(scorer, a) for a in allocs])
    order = np.lexsort((idx, costs))
    if not spread:
        return [Pattern((allocs[j],), float(costs[j]), "single") for j in order[:SINGLES].tolist()]
    side = order[: PAIR_SIDE * 3].tolist()
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
