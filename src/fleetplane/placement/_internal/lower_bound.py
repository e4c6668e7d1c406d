"""A lower bound on the objective of *any* plan, not only of plans made of the MILP's patterns.

The exact solver's dual bound (exact.py) is over its pattern set: whole-workload
single or paired candidates plus greedy's own allocations. A plan that splits a
workload's sources over candidates some other way, or a job's tasks, is not in
that set, so that bound does not bound it. This module is the honest one: a
linear relaxation of the whole problem as the engine defines it (the candidate
table's hard filters, the Scorer objective, sizing and capacity), with no
pattern restriction. Per placed workload ``w`` and candidate ``c``:

* ``x[s, c]`` — share of source ``s``'s traffic routed to ``c`` (Σ_c x = 1),
  only where ``source_ok``; it pays ``per_source[s, c]`` per unit share;
* ``z[s, c]`` — design coverage: the fraction of ``s``'s peak ``c`` is sized to
  absorb (``x ≤ z ≤ 1``); a workload needing two failure domains has
  coverage ≥ 1 in two of them (``u[s, D] ≤ Σ_{c∈D} z``, ``u ≤ 1``, Σ_D u ≥ 2);
* ``v[c]`` — replicas, continuous: at least the stable-server count of the
  load it is designed for (``v ≥ Σ_s z·λ_s·svc_mean/concurrency``, which every
  sizing satisfies: utilisation must stay below one), at least the whole
  replicas one source alone needs to be stable (``v ≥ z[s, c]·⌈servers_s/k⌉``:
  serving more sources never needs fewer), and at least ``y``;
* ``y[c]`` — whether ``c`` is used (``y ≥ z``): pays ``per_site[c]``;
* jobs and workloads without sources: ``t[c]`` tasks (Σ t = tasks, or tasks on
  each of two domains when spread), ``y ≥ t / tasks``.

Capacity rows are the pools' cpu, memory and accelerator totals, the sites'
power budgets and, per candidate, what an empty pool holds. Every plan the
engine can produce (any solver, any split) maps to a feasible point of this
LP with the same objective or more, so its optimum bounds every such plan
that places the same workloads. Not modelled (so the bound is weaker, never
wrong): integrality of replicas and of routing, node-level packing beyond
the per-candidate cap, exact latency sizing beyond stability.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import highspy
import numpy as np
from scipy import sparse

from fleetplane.placement._internal import prediction, sizing
from fleetplane.placement._internal.candidates import Candidates
from fleetplane.placement._internal.highs import quiet_highs
from fleetplane.placement._internal.patterns import empty_fits
from fleetplane.placement._internal.scoring import Scorer
from fleetplane.placement._internal.solve import SolverInput, needs_spread


@dataclass
class _Lp:
    cost: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    cols: list[int] = field(default_factory=list)
    vals: list[float] = field(default_factory=list)
    row_lower: list[float] = field(default_factory=list)
    row_upper: list[float] = field(default_factory=list)
    capacity: dict[tuple[str, int, int], int] = field(default_factory=dict)
    limits: dict[tuple[str, int, int], float] = field(default_factory=dict)

    def var(self, cost: float, upper: float = np.inf, integer: bool = False) -> int:
        self.cost.append(float(cost))
        self.upper.append(float(upper))
        self.integer.append(integer)
        return len(self.cost) - 1

    def row(self, terms: list[tuple[int, float]], lower: float, upper: float) -> None:
        r = len(self.row_lower)
        self.row_lower.append(lower)
        self.row_upper.append(upper)
        for j, a in terms:
            self.rows.append(r)
            self.cols.append(j)
            self.vals.append(float(a))

    def use(self, key: tuple[str, int, int], limit: float, j: int, amount: float) -> None:
        """Charge ``amount`` per unit of variable ``j`` against a capacity row."""
        if amount <= 0 or not np.isfinite(limit):
            return
        r = self.capacity.get(key)
        if r is None:
            r = len(self.row_lower)
            self.capacity[key] = r
            self.row_lower.append(-np.inf)
            self.row_upper.append(limit)
        self.rows.append(r)
        self.cols.append(j)
        self.vals.append(float(amount))


def _charge(lp: _Lp, inp: SolverInput, cands: Candidates, c: int, j: int) -> None:
    """One replica (or task) of candidate ``c`` counted as variable ``j`` against capacity."""
    index = inp.capacity.index
    d = cands.demand(c)
    row = int(cands.row[c])
    nodes = float(index.row_nodes[row])
    lp.use(("cpu", row, 0), float(index.row_cpu[row]) * nodes, j, d.cpu)
    lp.use(("mem", row, 0), float(index.row_memory[row]) * nodes, j, d.memory)
    if d.entry >= 0:
        have = float(index.row_acc_count[row, d.entry]) * nodes
        lp.use(("acc", row, d.entry), have, j, float(d.accelerators))
    site = int(index.row_site[row])
    lp.use(("pow", site, 0), float(index.site_power_budget[site]), j, d.power)


def _requests(lp: _Lp, inp: SolverInput, cands: Candidates, scorer: Scorer) -> None:
    spread = needs_spread(cands)
    fits = empty_fits(inp.capacity.index, cands)
    load = sizing.design_rates(cands)
    per_server = cands.svc_mean / cands.concurrency
    n_src = len(cands.view.sources)
    cover: list[list[tuple[int, int]]] = [[] for _ in range(n_src)]  # (candidate, z var)
    for c in range(cands.size):
        if fits[c] <= 0 or not cands.source_ok[:, c].any():
            continue
        y = lp.var(scorer.per_site[c], 1.0, True)
        v = lp.var(scorer.per_replica[c], float(fits[c]), True)
        _charge(lp, inp, cands, c, v)
        lp.row([(v, 1.0), (y, -1.0)], 0.0, np.inf)
        stable: list[tuple[int, float]] = [(v, 1.0)]
        for s in np.flatnonzero(cands.source_ok[:, c]).tolist():
            z = lp.var(0.0, 1.0, True)
            x = lp.var(scorer.per_source[s, c], 1.0)
            lp.row([(z, 1.0), (x, -1.0)], 0.0, np.inf)  # routed only where designed for
            lp.row([(y, 1.0), (z, -1.0)], 0.0, np.inf)
            stable.append((z, -float(load[s] * per_server[c])))
            # Serving all of s alone already needs its stable-server count, whole replicas.
            alone = prediction.stable_servers(load[s : s + 1], cands.svc_mean[c : c + 1])
            least = float(-(-int(alone[0]) // int(cands.concurrency[c])))
            lp.row([(v, 1.0), (z, -least)], 0.0, np.inf)
            cover[s].append((c, z))
            cover[s].append((-1, x))  # traffic of s, summed below
        lp.row(stable, 0.0, np.inf)
    for s in range(n_src):
        traffic = [(j, 1.0) for c, j in cover[s] if c < 0]
        designs = [(c, j) for c, j in cover[s] if c >= 0]
        lp.row(traffic, 1.0, 1.0)
        if not spread:
            continue
        domains: dict[int, list[int]] = {}
        for c, j in designs:
            domains.setdefault(int(cands.domain[c]), []).append(j)
        covered = []
        for members in domains.values():
            u = lp.var(0.0, 1.0)
            lp.row([(j, 1.0) for j in members] + [(u, -1.0)], 0.0, np.inf)
            covered.append((u, 1.0))
        lp.row(covered, 2.0, np.inf)


def _tasks(lp: _Lp, inp: SolverInput, cands: Candidates, scorer: Scorer) -> None:
    """Jobs and workloads without sources: tasks, each side in full when spread."""
    spread = needs_spread(cands)
    fits = empty_fits(inp.capacity.index, cands)
    tasks = float(cands.view.min_replicas)
    side = 0.5 if spread else 1.0
    per_share = scorer.per_share + (
        scorer.per_source.sum(axis=0) if scorer.per_source.shape[0] else 0.0
    )
    placed: list[tuple[int, float]] = []
    domains: dict[int, list[int]] = {}
    for c in range(cands.size):
        if fits[c] <= 0:
            continue
        upper = min(float(fits[c]), tasks)
        t = lp.var(scorer.per_replica[c] + side * per_share[c] / tasks, upper, True)
        y = lp.var(scorer.per_site[c], 1.0, True)
        lp.row([(y, tasks), (t, -1.0)], 0.0, np.inf)
        _charge(lp, inp, cands, c, t)
        placed.append((t, 1.0))
        domains.setdefault(int(cands.domain[c]), []).append(t)
    if not spread:
        lp.row(placed, tasks, tasks)
        return
    covered = []
    for members in domains.values():
        u = lp.var(0.0, tasks)
        lp.row([(j, 1.0) for j in members] + [(u, -1.0)], 0.0, np.inf)
        covered.append((u, 1.0))
    lp.row(covered, 2.0 * tasks, np.inf)


def full_bound(
    inp: SolverInput, placed: set[str], *, integer: bool = False, time_limit: float = 60.0
) -> float | None:
    """A lower bound over the workloads in ``placed`` (None if HiGHS found none).

    ``integer=False``: the LP's optimum (about a second for 300 workloads).
    ``integer=True``: tasks, replicas, design coverage and site use are kept
    integral and HiGHS's dual bound after ``time_limit`` is returned — tighter
    (measured: 6-7% below the exact plan instead of 8-9%) but a minute per
    instance. ``inp.capacity`` must be fresh: capacity rows are the fleet's totals.
    """
    lp = _Lp()
    for cands, scorer in zip(inp.table, inp.scorers, strict=True):
        if cands.view.name not in placed:
            continue
        if cands.view.is_job or not len(cands.view.sources):
            _tasks(lp, inp, cands, scorer)
        else:
            _requests(lp, inp, cands, scorer)
    if not lp.cost:
        return 0.0
    matrix = sparse.csc_matrix(
        (lp.vals, (lp.rows, lp.cols)), shape=(len(lp.row_lower), len(lp.cost))
    )
    model = highspy.HighsLp()
    model.num_col_ = len(lp.cost)
    model.num_row_ = len(lp.row_lower)
    model.col_cost_ = np.array(lp.cost)
    model.col_lower_ = np.zeros(len(lp.cost))
    model.col_upper_ = np.where(np.isfinite(lp.upper), lp.upper, highspy.kHighsInf)
    model.row_lower_ = np.where(np.isfinite(lp.row_lower), lp.row_lower, -highspy.kHighsInf)
    model.row_upper_ = np.where(np.isfinite(lp.row_upper), lp.row_upper, highspy.kHighsInf)
    model.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    model.a_matrix_.start_ = matrix.indptr
    model.a_matrix_.index_ = matrix.indices
    model.a_matrix_.value_ = matrix.data
    h = quiet_highs()
    h.setOptionValue("time_limit", float(time_limit))
    if integer:
        model.integrality_ = [
            highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
            for i in lp.integer
        ]
    h.setOptionValue("random_seed", int(inp.seed))
    h.setOptionValue("mip_rel_gap", 1e-4)
    h.passModel(model)
    h.run()
    info = h.getInfo()
    if not integer:
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        # The optimum of the LP (its dual equals its primal there) bounds the problem.
        return float(info.objective_function_value)
    bound = float(info.mip_dual_bound)
    if not np.isfinite(bound) or abs(bound) >= 1e30:
        return None
    return bound
