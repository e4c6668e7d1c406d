"""Feasibility: the hard filters, run per workload over every (pool, profile) at once.

Order matters for speed, never for the answer (a candidate must pass every
filter). Each filter only looks at the rows the previous ones kept, so the
cheap, selective ones go first:

1. ``site``      — cordoned/draining sites: one boolean lookup.
2. ``residency`` — zone set lookups; in a multi-zone fleet this alone removes
                   most sites for every workload.
3. ``hardware``  — accelerator kind/model/memory/count and CPU arch: answered
                   once per kind of hardware (hardware.py), then an index.
4. ``image``     — runtime and driver version ranges: once per (image, arch).
5. ``storage``   — an acceptable storage medium when the workload reads.
6. ``capacity``  — one replica fits on one node (cpu, memory).
7. ``power``     — one replica's peak draw fits the site's power budget.
8. ``deadline``  — a job's run time on the profile fits its deadline.
9. ``network``   — a path from every data source the row would serve.
10. ``latency``  — round trip + storage + service (no queueing: more replicas
                   can always shorten the queue) meets every percentile target;
                   needs the all-pairs path table and quantile math, so it runs
                   on the few rows left, with cheap bounds first (prediction.py).
11. ``policy``   — CEL ``require`` rules, cached by the fields each rule reads
                   (rules.py). Diagnosis reports them last (a rule is the
                   operator's choice, the other filters are physics), but
                   screening runs them before latency: with the cache they are
                   a lookup per row, and the rows they remove (a regional
                   service's edge pools, most of a zone) would otherwise each
                   carry path arrays and quantile bounds per data source.

Request-serving workloads may split their data sources over several sites,
so a row survives residency/network/latency if it can serve *some* source;
which sources it may serve is kept per (source, row) for the solver. Jobs
(training, batch) run in one place and must reach all their sources.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fleetplane.model.units import HOURS_PER_MONTH, format_duration, format_size
from fleetplane.model.workload import PERCENTILES
from fleetplane.placement._internal import prediction
from fleetplane.placement._internal.candidates import Candidates, concat_rates
from fleetplane.placement._internal.context import PlanContext, StaticRows
from fleetplane.placement._internal.cost import (
    AcceleratorDetail,
    ReplicaRates,
    model_distribution,
    model_gb_per_month,
    replica_rates,
    replica_rates_flat,
)
from fleetplane.placement._internal.fleet_index import (
    GIB,
    MEMORY_UNITS_PER_GIB,
    BoolArray,
    FloatArray,
    IntArray,
)
from fleetplane.placement._internal.hardware import check_pool
from fleetplane.placement._internal.workload_view import ProfileView, WorkloadView

STAGES: tuple[tuple[str, str], ...] = (
    ("site", "site cordoned or draining"),
    ("residency", "data residency"),
    ("hardware", "accelerator or CPU arch"),
    ("image", "node image"),
    ("storage", "storage media"),
    ("capacity", "node too small"),
    ("power", "power budget"),
    ("deadline", "deadline"),
    ("network", "no network path"),
    ("latency", "latency SLO"),
    ("policy", "policy rule"),
)
STAGE_INDEX = {key: i for i, (key, _) in enumerate(STAGES)}
PASSED = len(STAGES)

StageResult = tuple[BoolArray, FloatArray | None]
StageFn = Callable[[PlanContext, WorkloadView, ProfileView, IntArray], StageResult]


# -- row-level stages (the same functions serve screening and diagnosis) ---------------------


def _site(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, rows: IntArray
) -> StageResult:
    return ~ctx.index.site_blocked[ctx.index.row_site[rows]], None


def _zone_codes(ctx: PlanContext, names: list[str]) -> tuple[int, ...]:
    return tuple(sorted(ctx.index.zones.index(z) for z in names if z in ctx.index.zones))


def source_zone_ok(ctx: PlanContext, view: WorkloadView, rows: IntArray) -> BoolArray:
    """(sources × rows): the row's site is in the zone the source's data must stay in."""
    zones = ctx.index.site_zone[ctx.index.row_site[rows]]
    return np.array([zones == s.zone for s in view.sources], dtype=bool).reshape(
        len(view.sources), rows.size
    )


def _residency(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, rows: IntArray
) -> StageResult:
    ok = np.ones(rows.size, dtype=bool)
    allowed = view.workload.spec.residency
    if allowed:
        ok &= ctx.rows_in_zones(_zone_codes(ctx, allowed))[rows]
    if view.sources:
        per_source = source_zone_ok(ctx, view, rows)
        ok &= per_source.all(axis=0) if view.is_job else per_source.any(axis=0)
    return ok, None


def _hardware(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, rows: IntArray
) -> StageResult:
    return ctx.hardware.match(view, profile).ok[rows], None


def _image(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, rows: IntArray
) -> StageResult:
    requirement = ctx.requirement(view)
    return ctx.images.ok(requirement, profile.accelerator_model)[rows], None


def _storage(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, rows: IntArray
) -> StageResult:
    reads = view.workload.spec.storage
    if reads.reads == 0:
        return np.ones(rows.size, dtype=bool), None
    has, _ = ctx.storage_rows(tuple(sorted(reads.media)))
    return has[rows], None


def storage_latency(ctx: PlanContext, view: WorkloadView, rows: IntArray) -> FloatArray:
    reads = view.workload.spec.storage
    if reads.reads == 0:
        return np.zeros(rows.size)
    _, latency = ctx.storage_rows(tuple(sorted(reads.media)))
    return np.asarray(reads.reads * latency[rows], dtype=np.float64)


def _capacity(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, rows: IntArray
) -> StageResult:
    ratio = np.maximum(view.cpu / ctx.index.row_cpu[rows], view.memory / ctx.index.row_memory[rows])
    return ratio <= 1.0 + 1e-9, ratio


def replica_power(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, rows: IntArray
) -> FloatArray:
    """Peak watts of one replica: node share × node watts + accelerators + profile power."""
    entry = ctx.hardware.match(view, profile).entry[rows]
    accelerators = view.accelerators_per_replica(profile)
    share = np.maximum(view.cpu / ctx.index.row_cpu[rows], view.memory / ctx.index.row_memory[rows])
    if accelerators:
        per_node = ctx.index.take_entry(ctx.index.row_acc_count, rows, entry)
        share = np.maximum(share, accelerators / np.maximum(per_node, 1.0))
    watts = np.minimum(share, 1.0) * ctx.index.row_node_watts[rows]
    watts = watts + accelerators * ctx.index.take_entry(ctx.index.row_acc_watts, rows, entry)
    return np.asarray(watts + profile.spec.power, dtype=np.float64)


def _power(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, rows: IntArray
) -> StageResult:
    budget = ctx.index.site_power_budget[ctx.index.row_site[rows]]
    if not np.isfinite(budget).any():
        return np.ones(rows.size, dtype=bool), None
    watts = replica_power(ctx, view, profile, rows)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(np.isfinite(budget), watts / budget, 0.0)
    return ratio <= 1.0 + 1e-9, ratio


def _deadline(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, rows: IntArray
) -> StageResult:
    deadline = view.workload.spec.slo.deadline
    runtime = profile.spec.runtime
    if not view.is_job or deadline is None or runtime is None:
        return np.ones(rows.size, dtype=bool), None
    ratio = runtime / deadline
    return np.full(rows.size, ratio <= 1.0 + 1e-9), np.full(rows.size, ratio)


def source_reachable(ctx: PlanContext, view: WorkloadView, rows: IntArray) -> BoolArray:
    sites = ctx.index.row_site[rows]
    return np.array(
        [ctx.network.source(s.site).reachable[sites] for s in view.sources], dtype=bool
    ).reshape(len(view.sources), rows.size)


def _model_reachable(ctx: PlanContext, view: WorkloadView, rows: IntArray) -> BoolArray:
    model = view.workload.spec.model
    if model is None or model.updates_per_day == 0:
        return np.ones(rows.size, dtype=bool)
    return np.isfinite(ctx.network.hub_price()[ctx.index.row_site[rows]])


def _network(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, rows: IntArray
) -> StageResult:
    ok = _model_reachable(ctx, view, rows)
    if view.sources:
        per_source = source_zone_ok(ctx, view, rows) & source_reachable(ctx, view, rows)
        ok &= per_source.all(axis=0) if view.is_job else per_source.any(axis=0)
    return ok, None


_STATIC: tuple[tuple[str, StageFn], ...] = (
    ("site", _site),
    ("residency", _residency),
    ("hardware", _hardware),
    ("image", _image),
    ("storage", _storage),
    ("capacity", _capacity),
    ("power", _power),
    ("deadline", _deadline),
    ("network", _network),
)


def latency_parts(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, rows: IntArray, storage: FloatArray
) -> prediction.Parts:
    """(sources × rows) flattened: the request path from each source to each row."""
    sites = ctx.index.row_site[rows]
    n_src = len(view.sources)
    mu = np.empty((n_src, rows.size))
    sigma = np.empty((n_src, rows.size))
    loss = np.empty((n_src, rows.size))
    for i, src in enumerate(view.sources):
        net = ctx.network.source(src.site)
        mu[i], sigma[i], loss[i] = net.rtt_mu[sites], net.rtt_sigma[sites], net.loss[sites]
    service = profile.service
    assert service is not None  # request workloads have service times (model validation)
    shape = (n_src, rows.size)
    return prediction.Parts(
        rtt_mu=mu.ravel(),
        rtt_sigma=sigma.ravel(),
        loss=loss.ravel(),
        storage=np.broadcast_to(storage, shape).ravel().copy(),
        svc_mean=np.full(n_src * rows.size, service.mean),
        svc_cv=np.full(n_src * rows.size, service.cv),
    )


def path_parts(
    ctx: PlanContext,
    source_sites: IntArray,
    rows: IntArray,
    storage: FloatArray,
    svc_mean: FloatArray,
    svc_cv: FloatArray,
) -> prediction.Parts:
    """The parts of request paths listed one by one: from site ``source_sites[k]`` to ``rows[k]``.

    The values :func:`latency_parts` gives for the same (source, row) pairs
    (the same gathers), for paths of many workloads at once: one gather per
    source site rather than a dozen numpy calls per workload and row.
    """
    sites = ctx.index.row_site[rows]
    mu, sigma, loss = np.empty(rows.size), np.empty(rows.size), np.empty(rows.size)
    order = np.argsort(source_sites, kind="stable")
    site_list, starts = np.unique(source_sites[order], return_index=True)
    bounds = [*starts.tolist(), rows.size]
    for site, start, end in zip(site_list.tolist(), bounds[:-1], bounds[1:], strict=True):
        net = ctx.network.source(site)
        mine = order[start:end]
        at = sites[mine]
        mu[mine], sigma[mine], loss[mine] = net.rtt_mu[at], net.rtt_sigma[at], net.loss[at]
    return prediction.Parts(mu, sigma, loss, storage, svc_mean, svc_cv)


# -- screening: static stages, then latency bounds; exact latency is resolved in a batch ----

# Stages that depend only on the workload's requirements (not its size or
# demand): their surviving rows are cached per requirement signature.
_SIGNATURE_STAGES = _STATIC[:5]


@dataclass
class ProfileRows:
    """The rows of one profile that passed the static stages, with per-source state.

    The (sources × rows) arrays are looked up once here and reused for
    latency bounds, exact checks and prices.
    """

    profile: ProfileView
    hw: StaticRows
    storage: FloatArray
    source_ok: BoolArray  # (sources × rows); latency is checked afterwards (resolve_latency)
    rtt_mu: FloatArray
    rtt_sigma: FloatArray
    loss: FloatArray
    price: FloatArray  # money per GB from each source to each row
    timed: bool = False  # has latency targets and sources: checked by resolve_latency

    @property
    def rows(self) -> IntArray:
        return self.hw.rows


@dataclass
class Screened:
    view: WorkloadView
    profiles: list[ProfileRows]
    # The resolve_latency batch it was resolved in: finish prices the whole
    # batch at once on its first call, and scoring computes per-candidate
    # quantities for all of the batch's tables at once.
    batch: Batch | None = None


@dataclass(eq=False)
class Batch:
    screened: list[Screened]
    tables: list[Candidates] = field(default_factory=list)  # finished, shared with each table
    priced: dict[int, Candidates] | None = None  # id(screened) → capped table, until taken


def _signature_rows(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView
) -> tuple[IntArray, IntArray]:
    rows = np.arange(ctx.index.n_rows, dtype=np.int64)
    for _, stage in _SIGNATURE_STAGES:
        ok, _ = stage(ctx, view, profile, rows)
        rows = rows[ok]
        if not rows.size:
            break
    return rows, ctx.hardware.match(view, profile).entry[rows]


@dataclass(frozen=True)
class _SizedRows:
    """Per static row, what the size-dependent stages read (once per requirement signature)."""

    cpu: FloatArray
    cpu_limit: FloatArray
    memory: FloatArray
    budgeted: bool
    budget_limit: FloatArray
    node_watts: FloatArray


def _sized_memo(ctx: PlanContext, hw: StaticRows) -> _SizedRows:
    """Per static row, what the size stages read: computed once per requirement signature."""
    found = hw.memo.get("sized")
    if found is None:
        index = ctx.index
        rows = hw.rows
        budget = ctx.row_budget[rows]
        found = hw.memo["sized"] = _SizedRows(
            cpu=index.row_cpu[rows],
            cpu_limit=index.row_cpu[rows] * (1.0 + 1e-9),
            memory=index.row_memory[rows],
            budgeted=bool(np.isfinite(budget).any()),
            budget_limit=budget * (1.0 + 1e-9),
            node_watts=index.row_node_watts[rows],
        )
    assert isinstance(found, _SizedRows)
    return found


def screen(ctx: PlanContext, view: WorkloadView) -> Screened:
    """Static filters and the cheap latency screen for every profile of one workload."""
    return screen_many(ctx, [view])[0]


@dataclass
class _Group:
    """The profiles of a chunk sharing one requirement signature (the same static rows)."""

    hw: StaticRows
    members: list[tuple[int, WorkloadView, ProfileView]]  # (item number, workload, profile)
    keep: BoolArray = field(default_factory=lambda: np.zeros((0, 0), dtype=bool))


def screen_many(ctx: PlanContext, views: Sequence[WorkloadView]) -> list[Screened]:
    """:func:`screen` for a chunk of workloads, grouped by requirement signature.

    Per (workload, profile) only Python bookkeeping is left: its static rows
    (cached per signature), the scalars the size stages read and its policy
    key. The stages themselves run once per signature for all its profiles in
    the chunk, on a (profiles × static rows) matrix: sizes and power, then
    policy by one table lookup per policy key. The per-source stages (a path,
    the source's residency zone, a round-trip median within the tightest
    target) and the path gathers run once for the whole chunk over flat
    (profile, source, row) elements. The result is the same as screening
    each workload alone, profile by profile, as before (~70 µs per profile)
    — the rule evaluator's counters included.
    """
    groups: dict[int, _Group] = {}
    n_items = 0
    # Fill the network rows of the chunk's source sites together (the gathers read the matrices).
    ctx.network.fill(s.site for view in views for s in view.sources)
    for view in views:
        for profile in view.profiles:
            hw = ctx.static_rows(
                view, profile, functools.partial(_signature_rows, ctx, view, profile)
            )
            if hw.rows.size:
                group = groups.get(id(hw))
                if group is None:
                    group = groups[id(hw)] = _Group(hw, [])
                group.members.append((n_items, view, profile))
            n_items += 1
    for group in groups.values():
        _sized_group(ctx, group)
    if ctx.policy.requires:
        _policy_groups(ctx, list(groups.values()))
    return _screen_sources(ctx, views, list(groups.values()), n_items)


def _sized_group(ctx: PlanContext, group: _Group) -> None:
    """Capacity, power, deadline, model reachability for profiles sharing static rows.

    Element for element the operations :func:`screen` ran per profile, on a
    (profiles × rows) matrix.
    """
    hw = group.hw
    found = _sized_memo(ctx, hw)
    members = group.members
    cpu = np.array([v.cpu for _, v, _ in members], dtype=np.float64)[:, None]
    memory = np.array([v.memory for _, v, _ in members], dtype=np.float64)[:, None]
    keep = (cpu <= found.cpu_limit) & (memory <= found.memory)
    if found.budgeted:
        accelerators = np.array(
            [v.accelerators_per_replica(p) for _, v, p in members], dtype=np.int64
        )[:, None]
        power = np.array([p.spec.power for _, _, p in members], dtype=np.float64)[:, None]
        share = np.maximum(cpu / found.cpu, memory / found.memory)
        share = np.where(
            accelerators != 0,
            np.maximum(share, accelerators / np.maximum(hw.acc.count, 1.0)),
            share,
        )
        watts = np.minimum(share, 1.0) * found.node_watts + power
        watts = watts + accelerators * hw.acc.watts
        keep &= watts <= found.budget_limit
    late = [k for k, (_, v, p) in enumerate(members) if _misses_deadline(v, p)]
    if late:
        keep[late] = False
    pulls = [k for k, (_, v, _) in enumerate(members) if _pulls_model(v)]
    if pulls:
        keep[pulls] &= ctx.model_rows()[hw.rows]
    group.keep = keep


def _misses_deadline(view: WorkloadView, profile: ProfileView) -> bool:
    if not view.is_job:
        return False
    deadline = view.workload.spec.slo.deadline
    runtime = profile.spec.runtime
    return deadline is not None and runtime is not None and runtime > deadline * (1.0 + 1e-9)


def _pulls_model(view: WorkloadView) -> bool:
    model = view.workload.spec.model
    return model is not None and model.updates_per_day > 0


def _policy_groups(ctx: PlanContext, groups: list[_Group]) -> None:
    """Require rules: one table lookup per (signature, policy key) where the table is complete.

    A key with a row still unknown for some profile that asks for it (or
    with no table yet) is decided as before, one profile at a time in chunk
    order through :meth:`RuleEvaluator.require`, so the same rows are
    evaluated by the same profiles and the evaluator counts the same.
    """
    rules = ctx.rules
    slow: set[Any] = set()
    known: list[tuple[Any, _Group, list[int], BoolArray, int]] = []
    pending: list[tuple[int, _Group, int]] = []  # (item number, group, member) of slow keys
    for group in groups:
        if not rules.cache_enabled:
            pending += [(n, group, k) for k, (n, _, _) in enumerate(group.members)]
            continue
        by_key: dict[Any, list[int]] = {}
        for k, (_, view, profile) in enumerate(group.members):
            by_key.setdefault(rules.require_key(view, profile), []).append(k)
        for key, same in by_key.items():
            table = rules.require_known(key)
            asked = group.keep[same]
            if table is None or key in slow:
                slow.add(key)
            else:
                values = table[group.hw.rows]
                if (asked & (values == -2)).any():
                    slow.add(key)
                else:
                    known.append((key, group, same, values == -1, int(asked.sum())))
                    continue
            pending += [(group.members[k][0], group, k) for k in same]
    for key, group, same, holds, asked_rows in known:
        if key in slow:
            pending += [(group.members[k][0], group, k) for k in same]
            continue
        rules.stats.lookups += asked_rows
        group.keep[same] &= holds
    # Rows still unknown: the per-profile path, in chunk order.
    for _, group, k in sorted(pending, key=lambda p: p[0]):
        _, view, profile = group.members[k]
        sel = np.flatnonzero(group.keep[k])
        if sel.size:
            group.keep[k] = False
            group.keep[k, sel[rules.require(view, profile, group.hw.rows[sel])[0]]] = True


def _screen_sources(
    ctx: PlanContext, views: Sequence[WorkloadView], groups: list[_Group], n_items: int
) -> list[Screened]:
    """Per-source stages and gathers for every kept (profile, source, row) of a chunk at once.

    "Columns" are every profile's kept rows laid end to end (group by group,
    member by member); "elements" are (profile, source, column), each
    profile's block (sources × its columns) row-major, so a profile's arrays
    are slices of the flat ones. A column survives if its row may serve some
    source (all of them for a job; no filter without sources).
    """
    index = ctx.index
    members = [m for g in groups for m in g.members]
    which, local = [], []
    for g in groups:
        m, c = np.nonzero(g.keep)
        which.append(m)
        local.append(c)
    n_p = len(members)
    if not n_p:
        return [Screened(view, []) for view in views]
    n_col = np.concatenate(
        [np.bincount(m, minlength=len(g.members)) for m, g in zip(which, groups, strict=True)]
    )
    # Per column: the group's arrays it reads (rows, pool entry, accelerator detail).
    col_rows = np.concatenate([g.hw.rows[c] for g, c in zip(groups, local, strict=True)])
    col_sites = index.row_site[col_rows]
    col_start = np.concatenate([[0], np.cumsum(n_col)[:-1]])
    n_src = np.array([len(v.sources) for _, v, _ in members], dtype=np.int64)
    alive = np.ones(col_rows.size, dtype=bool)
    n_el = n_src * n_col
    total = int(n_el.sum())
    m_mu, m_sigma, m_loss, m_reach, m_price = ctx.network.matrices()
    ok = np.zeros(0, dtype=bool)
    mu = sigma = loss = price = np.zeros(0)
    if total:
        # Pairs (profile, source) in order; the elements of pair q are its
        # profile's columns: element e is column first_col[q] + (e - first_el[q]).
        pair_owner = np.repeat(np.arange(n_p), n_src)
        pair_len = n_col[pair_owner]
        first_el = np.concatenate([[0], np.cumsum(pair_len)[:-1]])
        col = np.arange(total) + np.repeat(col_start[pair_owner] - first_el, pair_len)
        sources = [s for _, v, _ in members for s in v.sources]
        pair_base = np.array([s.site for s in sources], dtype=np.int64) * index.n_sites
        pair_zone = np.array([s.zone for s in sources], dtype=np.int64)
        # Flat (source site, row site) index into the network matrices.
        at = np.repeat(pair_base, pair_len) + col_sites[col]
        # May serve: a path, the source's residency zone and, with targets, a
        # round-trip median within the tightest one (latency is at least the
        # round trip, and every target is at or above the median).
        ok = m_reach.ravel().take(at)
        ok &= index.site_zone[col_sites][col] == np.repeat(pair_zone, pair_len)
        timed = np.array([bool(v.targets) for _, v, _ in members], dtype=bool)
        tightest = np.array(
            [np.log(min(t for _, t in v.targets)) if v.targets else np.inf for _, v, _ in members],
            dtype=np.float64,
        )
        mu_all = m_mu.ravel().take(at)
        within = mu_all <= np.repeat(tightest[pair_owner], pair_len)
        if not timed.all():
            within |= np.repeat(~timed[pair_owner], pair_len)
        ok &= within
        serving = np.bincount(col, weights=ok, minlength=col_rows.size)
        is_job = np.array([v.is_job for _, v, _ in members], dtype=bool)
        col_owner = np.repeat(np.arange(n_p), n_col)
        with_src = (n_src > 0)[col_owner]
        alive[with_src] = np.where(is_job[col_owner], serving == n_src[col_owner], serving > 0)[
            with_src
        ]
        kept = alive[col]
        if not kept.all():
            ok, at, mu_all = ok[kept], at[kept], mu_all[kept]
        mu = mu_all
        sigma = m_sigma.ravel().take(at)
        loss = m_loss.ravel().take(at)
        price = m_price.ravel().take(at)
    # Surviving columns, per group: the static rows' arrays taken once.
    alive_before = np.concatenate([[0], np.cumsum(alive)])
    n_alive = (alive_before[col_start + n_col] - alive_before[col_start]).astype(np.int64)
    survivors: list[StaticRows] = []
    start = 0
    for g, c in zip(groups, local, strict=True):
        survivors.append(g.hw.take(c[alive[start : start + c.size]]))
        start += c.size
    rows = np.concatenate([s.rows for s in survivors])
    storage = _storage_columns(ctx, members, n_alive, rows)
    a_start = np.concatenate([[0], np.cumsum(n_alive)])
    e_start = np.concatenate([[0], np.cumsum(n_src * n_alive)])
    by_item: dict[int, ProfileRows] = {}
    p = 0
    g_start = 0  # first surviving column of the group
    for g, hw_all in zip(groups, survivors, strict=True):
        for number, view, profile in g.members:
            a, b = int(a_start[p]), int(a_start[p + 1])
            ns = int(n_src[p])
            if a < b:
                x, y = a - g_start, b - g_start
                hw = StaticRows(
                    hw_all.rows[x:y],
                    hw_all.entry[x:y],
                    AcceleratorDetail(
                        hw_all.acc.count[x:y],
                        hw_all.acc.watts[x:y],
                        hw_all.acc.price[x:y],
                        hw_all.acc.units[x:y],
                    ),
                )
                if ns:
                    shape = (ns, b - a)
                    e, f = int(e_start[p]), int(e_start[p + 1])
                    entry = ProfileRows(
                        profile,
                        hw,
                        storage[a:b],
                        ok[e:f].reshape(shape),
                        mu[e:f].reshape(shape),
                        sigma[e:f].reshape(shape),
                        loss[e:f].reshape(shape),
                        price[e:f].reshape(shape),
                    )
                else:
                    zeros = np.zeros((0, b - a))
                    empty = np.zeros((0, b - a), dtype=bool)
                    entry = ProfileRows(
                        profile, hw, storage[a:b], empty, zeros, zeros, zeros, zeros
                    )
                entry.timed = bool(view.targets and ns)
                by_item[number] = entry
            p += 1
        g_start += hw_all.rows.size
    out = []
    number = 0
    for view in views:
        profiles = []
        for _ in view.profiles:
            found = by_item.get(number)
            if found is not None:
                profiles.append(found)
            number += 1
        out.append(Screened(view, profiles))
    assert number == n_items
    return out


def _storage_columns(
    ctx: PlanContext,
    members: list[tuple[int, WorkloadView, ProfileView]],
    counts: IntArray,
    rows: IntArray,
) -> FloatArray:
    """:func:`storage_latency` of each profile's surviving rows, laid end to end."""
    out = np.zeros(rows.size)
    owner = np.repeat(np.arange(len(members)), counts)
    by_media: dict[tuple[str, ...], list[int]] = {}
    reads = np.zeros(len(members))
    for p, (_, view, _) in enumerate(members):
        spec = view.workload.spec.storage
        if spec.reads != 0:
            reads[p] = spec.reads
            by_media.setdefault(tuple(sorted(spec.media)), []).append(p)
    for media, chosen in by_media.items():
        _, latency = ctx.storage_rows(media)
        mine = np.zeros(len(members), dtype=bool)
        mine[chosen] = True
        at = np.flatnonzero(mine[owner])
        out[at] = reads[owner[at]] * latency[rows[at]]
    return out


def resolve_latency(batch: list[Screened]) -> None:
    """Latency without queueing for every (source, row, target) of every workload.

    Cheap bounds decide most of them in one vectorised pass over the whole
    batch; exact quantiles (fleetplane.latency) decide the rest: all of them,
    in one call, while that fits ``prediction.EXACT_BUDGET``. Beyond it only
    those of sources with no row the bounds already proved feasible: a source
    with a proven candidate keeps its proven ones and its undecided rows —
    those barely inside the target, which would need many replicas — are
    dropped. Either way no infeasible row survives.
    """
    shared = Batch(list(batch))
    for s in batch:
        s.batch = shared
    entries = [e for s in batch for e in s.profiles if e.timed]
    targets = [s.view.targets for s in batch for e in s.profiles if e.timed]
    if not entries:
        return
    # Elements (entry, target, live (source, row) pair) in that order, built
    # flat: each (entry, target) block repeats the entry's live pairs.
    sizes = np.array([e.source_ok.size for e in entries], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    live = np.flatnonzero(np.concatenate([e.source_ok.reshape(-1) for e in entries]))
    live_who = np.searchsorted(offsets, live, side="right") - 1
    live_where = live - offsets[live_who]
    counts = np.bincount(live_who, minlength=len(entries))
    live_start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    n_targets = np.array([len(t) for t in targets], dtype=np.int64)
    block_entry = np.repeat(np.arange(len(entries)), n_targets)
    block_len = counts[block_entry]
    block_out = np.concatenate([[0], np.cumsum(block_len)[:-1]])
    pick = np.arange(int(block_len.sum())) + np.repeat(
        live_start[block_entry] - block_out, block_len
    )
    who = np.asarray(live_who[pick], dtype=np.int64)
    where = np.asarray(live_where[pick], dtype=np.int64)
    q = np.repeat(np.array([level for t in targets for level, _ in t], dtype=np.float64), block_len)
    limit = np.repeat(np.array([x for t in targets for _, x in t], dtype=np.float64), block_len)
    parts = _gather(entries, who, where)
    lower, upper = prediction.no_wait_bounds(q, parts)
    fail = lower > limit * (1.0 + 1e-9)
    _clear(entries, who[fail], where[fail])
    pending = np.flatnonzero(~fail & (upper > limit))
    if pending.size > prediction.EXACT_BUDGET:
        pending = _needed(batch, entries, who, where, pending)
    if not pending.size:
        return
    values = prediction.quantiles(q[pending], parts.take(pending))
    slow = pending[values > limit[pending] * (1.0 + 1e-9)]
    _clear(entries, who[slow], where[slow])


def _clear(entries: list[ProfileRows], who: IntArray, where: IntArray) -> None:
    """Mark (entry, flat index) pairs infeasible; indices are row-major over (sources × rows)."""
    if not who.size:
        return
    order = np.argsort(who, kind="stable")
    who, where = who[order], where[order]
    starts = np.flatnonzero(np.r_[True, who[1:] != who[:-1]])
    ends = np.r_[starts[1:], who.size]
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        entry = entries[int(who[start])]
        source, row = np.divmod(where[start:end], entry.rows.size)
        entry.source_ok[source, row] = False


def _gather(entries: list[ProfileRows], who: IntArray, where: IntArray) -> prediction.Parts:
    """The path parts of (entry, flat index) pairs, read straight from the entries' arrays.

    One take per field from the entries' arrays laid end to end.
    """
    if not who.size:
        empty = np.zeros(0)
        return prediction.Parts(empty, empty, empty, empty, empty, empty)
    sizes = np.array([e.source_ok.size for e in entries], dtype=np.int64)
    widths = np.array([e.rows.size for e in entries], dtype=np.int64)
    flat = np.concatenate([[0], np.cumsum(sizes)[:-1]])[who] + where
    row = np.concatenate([[0], np.cumsum(widths)[:-1]])[who] + where % widths[who]
    services = [e.profile.service for e in entries]
    assert all(s is not None for s in services)  # request workloads have service times
    return prediction.Parts(
        rtt_mu=np.concatenate([e.rtt_mu.ravel() for e in entries])[flat],
        rtt_sigma=np.concatenate([e.rtt_sigma.ravel() for e in entries])[flat],
        loss=np.concatenate([e.loss.ravel() for e in entries])[flat],
        storage=np.concatenate([e.storage for e in entries])[row],
        svc_mean=np.array([s.mean if s else 0.0 for s in services], dtype=np.float64)[who],
        svc_cv=np.array([s.cv if s else 0.0 for s in services], dtype=np.float64)[who],
    )


def _needed(
    batch: list[Screened],
    entries: list[ProfileRows],
    who: IntArray,
    where: IntArray,
    pending: IntArray,
) -> IntArray:
    """Undecided elements of sources with no row proven feasible; the others are dropped."""
    workload_of = {id(e): w for w, s in enumerate(batch) for e in s.profiles}
    workload = np.array([workload_of[id(e)] for e in entries], dtype=np.int64)
    width = np.array([e.rows.size for e in entries], dtype=np.int64)
    base = np.concatenate([[0], np.cumsum([len(s.view.sources) for s in batch])])
    # Global (workload, source) id of every element.
    ident = base[workload[who]] + where // width[who]
    undecided = np.zeros(who.size, dtype=bool)
    undecided[pending] = True
    proven = np.zeros(int(base[-1]), dtype=bool)
    proven[ident[~undecided & _still_ok(entries, who, where)]] = True
    drop = pending[proven[ident[pending]]]
    _clear(entries, who[drop], where[drop])
    return np.asarray(pending[~proven[ident[pending]]], dtype=np.int64)


def _still_ok(entries: list[ProfileRows], who: IntArray, where: IntArray) -> BoolArray:
    """Whether each (entry, flat index) is still marked feasible."""
    out = np.zeros(who.size, dtype=bool)
    starts = np.flatnonzero(np.r_[True, who[1:] != who[:-1]]) if who.size else who
    ends = np.r_[starts[1:], who.size] if who.size else who
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        entry = entries[int(who[start])]
        source, row = np.divmod(where[start:end], entry.rows.size)
        out[start:end] = entry.source_ok[source, row]
    return out


def finish(ctx: PlanContext, screened: Screened, *, capped: bool = True) -> Candidates:
    """Prices for the rows that survived screening (policy rules included): the candidate table.

    ``capped`` keeps only the cheapest rows per source or job (see
    CANDIDATES_PER_SOURCE); the table counts the feasible rows it left out.
    """
    batch = screened.batch
    if capped and batch is not None:
        if batch.priced is None:
            batch.priced = _finish_many(ctx, batch.screened)
        found = batch.priced.pop(id(screened), None)
        if not batch.priced:
            # Every table is out: let the screened rows go (they and the batch
            # refer to each other, and would otherwise wait for the cycle collector).
            batch.screened.clear()
        if found is not None:
            found.batch = batch.tables
            batch.tables.append(found)
            return found
    view = screened.view
    pieces: list[_Piece] = []
    dropped = 0
    for entry in screened.profiles:
        keep = np.ones(entry.rows.size, dtype=bool)
        if view.sources:
            reach = entry.source_ok.all(axis=0) if view.is_job else entry.source_ok.any(axis=0)
            keep = np.asarray(reach, dtype=bool)
        if keep.any():
            chosen = _cheapest(ctx, view, entry, keep) if capped else np.flatnonzero(keep)
            dropped += int(keep.sum()) - chosen.size
            pieces.append(_price(ctx, view, entry, chosen))
    table = _assemble(ctx, view, pieces)
    table.beyond_cap = dropped
    if batch is not None:
        table.batch = batch.tables
        batch.tables.append(table)
    return table


def _finish_many(ctx: PlanContext, batch: list[Screened]) -> dict[int, Candidates]:
    """:func:`finish` (capped) for every workload of a batch, priced in flat arrays at once.

    Per (workload, profile) only the kept rows are chosen (and the cap
    applied); everything else — replica rates, model distribution, egress,
    the candidate columns of the per-source arrays — is computed over the
    whole batch in a few vectorised operations, and each table's arrays are
    slices of the batch's. The values are those :func:`finish` computes one
    workload at a time.
    """
    index = ctx.index
    # Every (workload, profile) entry, even one with no row left (it then has
    # no candidate: counts are 0 and it adds nothing to the flat arrays).
    entries = [e for s in batch for e in s.profiles]
    owner = [w for w, s in enumerate(batch) for _ in s.profiles]  # workload number per entry
    out: dict[int, Candidates] = {}
    pos, counts, dropped = _chosen_columns(ctx, batch, entries, owner)
    if not pos.size:
        for screened in batch:
            out[id(screened)] = _assemble(ctx, screened.view, [])
        return out
    n_entries = len(entries)
    widths = np.array([e.rows.size for e in entries], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(widths)[:-1]])
    which = np.repeat(np.arange(n_entries), counts)  # entry of each candidate

    def flat(name: str) -> np.ndarray:
        return np.asarray(np.concatenate([getattr(e, name) for e in entries])[pos])

    rows = np.concatenate([e.hw.rows for e in entries])[pos]
    hw_entry = np.concatenate([e.hw.entry for e in entries])[pos].astype(np.int64)
    acc = AcceleratorDetail(
        *(
            np.concatenate([getattr(e.hw.acc, f) for e in entries])[pos]
            for f in AcceleratorDetail.__dataclass_fields__
        )
    )
    storage = flat("storage")
    sites = index.row_site[rows]

    def per_entry(values: Sequence[float | int | bool], dtype: type) -> np.ndarray:
        return np.repeat(np.array(values, dtype=dtype), counts)

    views = [batch[w].view for w in owner]
    profiles = [e.profile for e in entries]
    rates = replica_rates_flat(
        index,
        rows,
        acc,
        per_entry([v.cpu for v in views], np.float64),
        per_entry([v.memory for v in views], np.float64),
        per_entry(
            [v.accelerators_per_replica(p) for v, p in zip(views, profiles, strict=True)],
            np.int64,
        ),
        per_entry(
            [HOURS_PER_MONTH * v.duty(p) for v, p in zip(views, profiles, strict=True)],
            np.float64,
        ),
        per_entry([p.spec.power for p in profiles], np.float64),
        per_entry([p.spec.energy_per_request for p in profiles], np.float64),
    )
    gb = [model_gb_per_month(v) for v in views]
    has_model = per_entry([g is not None for g in gb], np.bool_)
    hub = ctx.network.hub_price()[sites]
    with np.errstate(invalid="ignore"):
        model_cost = np.where(has_model, per_entry([g or 0.0 for g in gb], np.float64) * hub, 0.0)
    if ctx.policy.prefers:
        first = np.concatenate([[0], np.cumsum(counts)]).tolist()
        penalty = ctx.rules.penalties(
            [
                (v, e.profile, rows[first[i] : first[i + 1]])
                for i, (v, e) in enumerate(zip(views, entries, strict=True))
            ]
        )
    else:
        penalty = np.zeros(rows.size)
    svc_mean = per_entry([p.service.mean if p.service else 0.0 for p in profiles], np.float64)
    svc_cv = per_entry([p.service.cv if p.service else 0.0 for p in profiles], np.float64)
    concurrency = per_entry([p.spec.concurrency for p in profiles], np.int64)
    profile_no = per_entry([p.index for p in profiles], np.int64)
    domain = ctx.site_domain[sites]

    # Per-source columns: each workload's (sources × candidates) block, row-major,
    # one after another in flat buffers; element (s, j) of a workload reads
    # entry e(j)'s element (s, local column of j).
    n_src = np.array([len(s.view.sources) for s in batch], dtype=np.int64)
    cand_owner = np.repeat(np.array(owner, dtype=np.int64), counts)  # workload per candidate
    per_workload = np.bincount(cand_owner, minlength=len(batch))  # candidates per workload
    col_start = np.concatenate([[0], np.cumsum(per_workload)[:-1]])
    block = n_src * per_workload
    block_start = np.concatenate([[0], np.cumsum(block)[:-1]])
    total = int(block.sum())
    element_w = np.repeat(np.arange(len(batch)), block)
    k = np.arange(total) - block_start[element_w]
    src, j = np.divmod(k, np.maximum(per_workload[element_w], 1))
    cand = col_start[element_w] + j
    e_of = which[cand]
    local = pos[cand] - starts[e_of]
    src_starts = np.concatenate(
        [[0], np.cumsum(np.array([e.source_ok.size for e in entries], dtype=np.int64))[:-1]]
    )
    src_pos = src_starts[e_of] + src * widths[e_of] + local

    def flat2(name: str) -> np.ndarray:
        return np.asarray(np.concatenate([getattr(e, name).ravel() for e in entries])[src_pos])

    source_ok = flat2("source_ok").astype(bool)
    rtt_mu = flat2("rtt_mu")
    rtt_sigma = flat2("rtt_sigma")
    loss = flat2("loss")
    gb_src = np.concatenate(
        [np.array([s.monthly_bytes / 1e9 for s in sc.view.sources]) for sc in batch]
    )
    src_global = np.concatenate([[0], np.cumsum(n_src)[:-1]])[element_w] + src
    egress = np.where(source_ok, gb_src[src_global] * flat2("price"), np.inf)

    ends = np.cumsum(per_workload)
    for w, screened in enumerate(batch):
        view = screened.view
        a, b = int(col_start[w]), int(ends[w])
        if a == b:
            table = _assemble(ctx, view, [])
        else:
            shape = (int(n_src[w]), b - a)
            p, q = int(block_start[w]), int(block_start[w] + block[w])
            table = Candidates(
                view=view,
                row=rows[a:b],
                profile=profile_no[a:b],
                entry=hw_entry[a:b],
                site=sites[a:b],
                domain=domain[a:b],
                storage=storage[a:b],
                svc_mean=svc_mean[a:b],
                svc_cv=svc_cv[a:b],
                concurrency=concurrency[a:b],
                rates=ReplicaRates(
                    *(getattr(rates, f)[a:b] for f in ReplicaRates.__dataclass_fields__)
                ),
                model_cost=model_cost[a:b],
                penalty=penalty[a:b],
                source_ok=source_ok[p:q].reshape(shape),
                rtt_mu=rtt_mu[p:q].reshape(shape),
                rtt_sigma=rtt_sigma[p:q].reshape(shape),
                loss=loss[p:q].reshape(shape),
                egress=egress[p:q].reshape(shape),
            )
        table.beyond_cap = dropped[w]
        out[id(screened)] = table
    return out


def _chosen_columns(
    ctx: PlanContext, batch: list[Screened], entries: list[ProfileRows], owner: list[int]
) -> tuple[IntArray, IntArray, list[int]]:
    """The candidates of a batch: flat positions into the entries' rows laid end to end.

    A row is kept where it may serve some source (every source for a job;
    every row without sources) — one count per (source, row) over the whole
    batch — and an entry with more kept rows than the cap keeps its cheapest
    (:func:`_cheapest`, as :func:`finish` does). Returns the positions in
    entry order, the candidates per entry and the feasible rows each
    workload left out by the cap.
    """
    dropped = [0] * len(batch)
    if not entries:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), dropped
    who = np.array(owner, dtype=np.int64)
    widths = np.array([e.rows.size for e in entries], dtype=np.int64)
    n_src = np.array([len(s.view.sources) for s in batch], dtype=np.int64)[who]
    is_job = np.array([s.view.is_job for s in batch], dtype=bool)[who]
    col_start = np.concatenate([[0], np.cumsum(widths)[:-1]])
    n_cols = int(widths.sum())
    col_owner = np.repeat(np.arange(len(entries)), widths)
    sizes = n_src * widths
    total = int(sizes.sum())
    serving: np.ndarray = np.zeros(n_cols)
    if total:
        el_owner = np.repeat(np.arange(len(entries)), sizes)
        k = np.arange(total) - np.concatenate([[0], np.cumsum(sizes)[:-1]])[el_owner]
        col = col_start[el_owner] + k % widths[el_owner]
        ok = np.concatenate([e.source_ok.reshape(-1) for e in entries])
        serving = np.bincount(col, weights=ok, minlength=n_cols)
    need = n_src[col_owner]
    reach = (need == 0) | np.where(is_job[col_owner], serving == need, serving > 0)
    before = np.concatenate([[0], np.cumsum(reach)])
    n_keep = before[col_start + widths] - before[col_start]
    limit = np.where(is_job | (n_src == 0), CANDIDATES_PER_JOB, CANDIDATES_PER_SOURCE)
    selected = reach
    capped = np.flatnonzero(n_keep > limit)
    if capped.size:
        selected = reach.copy()
        for e in capped.tolist():
            a, b = int(col_start[e]), int(col_start[e] + widths[e])
            picked = _cheapest(ctx, batch[owner[e]].view, entries[e], reach[a:b])
            selected[a:b] = False
            selected[a + picked] = True
            dropped[owner[e]] += int(n_keep[e]) - picked.size
    pos = np.flatnonzero(selected)
    counts = np.bincount(col_owner[pos], minlength=len(entries)).astype(np.int64)
    return np.asarray(pos, dtype=np.int64), counts, dropped


# At most this many candidates per data source (request workloads) or per
# profile (jobs) go into the candidate table: the cheapest by the price of a
# replica plus model distribution and the source's egress. A solver walks
# candidates in cost order and stops at the first that fits, so the rest of a
# large fleet's thousands of feasible pools only cost time and memory. When
# every candidate kept is full, the pipeline rebuilds that workload's table
# without the cut and solves it again (pipeline._second_chance), so a dearer
# pool beyond the cut is still found and "capacity" is only reported when
# no feasible pool has room.
CANDIDATES_PER_SOURCE = 64
CANDIDATES_PER_JOB = 256


def _cheapest(
    ctx: PlanContext, view: WorkloadView, entry: ProfileRows, keep: BoolArray
) -> IntArray:
    """Indices (into the entry's rows) of the candidates kept for pricing, in row order."""
    idx = np.flatnonzero(keep)
    limit = CANDIDATES_PER_JOB if view.is_job or not view.sources else CANDIDATES_PER_SOURCE
    if idx.size <= limit:
        return idx
    index = ctx.index
    rows = entry.rows[idx]
    sites = index.row_site[rows]
    accelerators = view.accelerators_per_replica(entry.profile)
    units = view.cpu + view.memory / GIB * MEMORY_UNITS_PER_GIB
    hourly = (
        view.cpu * index.site_cpu_hour[sites]
        + view.memory / GIB * index.site_memory_gib_hour[sites]
        + accelerators * entry.hw.acc.price[idx]
        + (units + accelerators * entry.hw.acc.units[idx]) * index.site_capex_unit_hour[sites]
    )
    hours = HOURS_PER_MONTH * view.duty(entry.profile)
    key = hourly * hours * max(view.min_replicas, 1) + model_distribution(
        view, ctx.network.hub_price(), sites
    )
    if view.is_job or not view.sources:
        chosen = np.lexsort((rows, key))[:limit]
    else:
        monthly_gb = np.array([s.monthly_bytes / 1e9 for s in view.sources])
        picked = np.zeros(idx.size, dtype=bool)
        for s in range(len(view.sources)):
            serves = np.flatnonzero(entry.source_ok[s, idx])
            if not serves.size:
                continue
            cost = key[serves] + monthly_gb[s] * entry.price[s, idx[serves]]
            picked[serves[np.lexsort((rows[serves], cost))[:limit]]] = True
        chosen = np.flatnonzero(picked)
    return np.asarray(np.sort(idx[chosen]), dtype=np.int64)


@dataclass
class _Piece:
    profile: ProfileView
    rows: IntArray
    entry: IntArray
    storage: FloatArray
    rates: ReplicaRates
    model_cost: FloatArray
    penalty: FloatArray
    source_ok: BoolArray
    rtt_mu: FloatArray
    rtt_sigma: FloatArray
    loss: FloatArray
    egress: FloatArray


def _price(ctx: PlanContext, view: WorkloadView, entry: ProfileRows, keep: IntArray) -> _Piece:
    index = ctx.index
    hw = entry.hw.take(keep)
    rows = hw.rows
    sites = index.row_site[rows]
    source_ok = entry.source_ok[:, keep]
    monthly_gb = np.array([s.monthly_bytes / 1e9 for s in view.sources])
    egress = monthly_gb[:, None] * entry.price[:, keep]
    penalty = (
        ctx.rules.penalty(view, entry.profile, rows) if ctx.policy.prefers else np.zeros(rows.size)
    )
    return _Piece(
        profile=entry.profile,
        rows=rows,
        entry=hw.entry,
        storage=entry.storage[keep],
        rates=replica_rates(index, view, entry.profile, rows, hw.acc),
        model_cost=model_distribution(view, ctx.network.hub_price(), sites),
        penalty=penalty,
        source_ok=source_ok,
        rtt_mu=entry.rtt_mu[:, keep],
        rtt_sigma=entry.rtt_sigma[:, keep],
        loss=entry.loss[:, keep],
        egress=np.where(source_ok, egress, np.inf),
    )


def _assemble(ctx: PlanContext, view: WorkloadView, pieces: list[_Piece]) -> Candidates:
    n_src = len(view.sources)
    if not pieces:
        empty_f = np.zeros(0)
        empty_i = np.zeros(0, dtype=np.int64)
        empty_2 = np.zeros((n_src, 0))
        return Candidates(
            view,
            empty_i,
            empty_i,
            empty_i,
            empty_i,
            empty_i,
            empty_f,
            empty_f,
            empty_f,
            empty_i,
            _empty_rates(),
            empty_f,
            empty_f,
            np.zeros((n_src, 0), dtype=bool),
            empty_2,
            empty_2,
            empty_2,
            empty_2,
        )
    if len(pieces) == 1:
        (p,) = pieces
        rows, rates = p.rows, p.rates
    else:
        rows = np.concatenate([p.rows for p in pieces])
        rates = concat_rates([p.rates for p in pieces])

    def cat(name: str) -> np.ndarray:
        arrays = [getattr(p, name) for p in pieces]
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=-1)

    sizes = [p.rows.size for p in pieces]
    profiles = [p.profile for p in pieces]
    sites = ctx.index.row_site[rows]
    return Candidates(
        view=view,
        row=rows,
        profile=np.repeat([p.index for p in profiles], sizes).astype(np.int64),
        entry=cat("entry").astype(np.int64),
        site=sites,
        domain=ctx.site_domain[sites],
        storage=cat("storage"),
        svc_mean=np.repeat([p.service.mean if p.service else 0.0 for p in profiles], sizes),
        svc_cv=np.repeat([p.service.cv if p.service else 0.0 for p in profiles], sizes),
        concurrency=np.repeat([p.spec.concurrency for p in profiles], sizes).astype(np.int64),
        rates=rates,
        model_cost=cat("model_cost"),
        penalty=cat("penalty"),
        source_ok=cat("source_ok").astype(bool),
        rtt_mu=cat("rtt_mu"),
        rtt_sigma=cat("rtt_sigma"),
        loss=cat("loss"),
        egress=cat("egress"),
    )


def _empty_rates() -> ReplicaRates:
    empty = np.zeros(0)
    return ReplicaRates(empty, empty, empty, empty, empty, empty)


def candidates_for(ctx: PlanContext, views: list[WorkloadView]) -> list[Candidates]:
    """The whole feasibility pass: screen each workload, resolve latency in one batch, finish."""
    screened = [screen(ctx, v) for v in views]
    resolve_latency(screened)
    return [finish(ctx, s) for s in screened]


# -- diagnosis: why a workload (or one of its sources) has no candidate ---------------------


@dataclass(frozen=True)
class Miss:
    """The furthest a row got: the stage it failed, by how much (>1: over), and why in words."""

    stage: int
    ratio: float
    row: int
    profile: int
    source: int | None = None


@dataclass
class Diagnosis:
    """Per failed row (best profile per row) its furthest stage, overshoot and profile.

    Held as arrays: an unplaceable workload of a large fleet fails on
    thousands of rows, and only one miss per site (or per stage) is ever shown.
    """

    rows: IntArray  # failed rows, ascending (rows where no profile passed)
    stage: IntArray
    ratio: FloatArray
    profile: IntArray
    passed: list[int]  # rows where some profile passed every filter
    source: int | None = None

    @property
    def misses(self) -> list[Miss]:
        return [self.miss(k) for k in range(self.rows.size)]

    def miss(self, k: int) -> Miss:
        return Miss(
            int(self.stage[k]),
            float(self.ratio[k]),
            int(self.rows[k]),
            int(self.profile[k]),
            self.source,
        )

    def feasible_sites(self, ctx: PlanContext) -> list[int]:
        return sorted({int(ctx.index.row_site[r]) for r in self.passed})

    def site_best(self, ctx: PlanContext) -> IntArray:
        """Indices (into the arrays) of each infeasible site's best miss, by site.

        Best: furthest stage first, then the smallest overshoot, then the
        lowest row and profile.
        """
        site = ctx.index.row_site[self.rows]
        infeasible = ~np.isin(site, np.array(self.feasible_sites(ctx), dtype=np.int64))
        k = np.flatnonzero(infeasible)
        order = k[
            np.lexsort((self.profile[k], self.rows[k], self.ratio[k], -self.stage[k], site[k]))
        ]
        first = np.r_[True, site[order][1:] != site[order][:-1]] if order.size else order < 0
        return np.asarray(order[first], dtype=np.int64)

    def by_site(self, ctx: PlanContext) -> dict[int, Miss]:
        """Per infeasible site, its best miss: furthest stage first, then the smallest overshoot."""
        return {
            int(ctx.index.row_site[self.rows[k]]): self.miss(int(k))
            for k in self.site_best(ctx).tolist()
        }


def _better(a: Miss, b: Miss) -> bool:
    return (a.stage, -a.ratio, -a.row, -a.profile) > (b.stage, -b.ratio, -b.row, -b.profile)


def diagnose(ctx: PlanContext, view: WorkloadView, source: int | None = None) -> Diagnosis:
    """Run every stage on every row (no early exit) and keep each row's furthest failure.

    With ``source`` the per-source stages (residency, network, latency) only
    consider that data source: why can *it* not be served anywhere?
    """
    return prediction.answer(diagnosing(ctx, view, source))


def diagnosing(
    ctx: PlanContext, view: WorkloadView, source: int | None = None
) -> prediction.Asking[Diagnosis]:
    """:func:`diagnose`, asking for its exact quantiles (see ``prediction.answer_together``)."""
    n = ctx.index.n_rows
    all_rows = np.arange(n, dtype=np.int64)
    best_stage = np.full(n, -1, dtype=np.int64)
    best_ratio = np.full(n, np.inf)
    best_profile = np.full(n, -1, dtype=np.int64)
    passed = np.zeros(n, dtype=bool)
    for profile in view.profiles:
        stage_of = np.full(n, PASSED, dtype=np.int64)
        ratio_of = np.full(n, np.inf)
        alive = all_rows
        for key, stage in _STATIC:
            ok, ratio = _stage_for_source(ctx, view, profile, alive, key, stage, source)
            failed = alive[~ok]
            stage_of[failed] = STAGE_INDEX[key]
            if ratio is not None:
                ratio_of[failed] = ratio[~ok]
            alive = alive[ok]
        if alive.size and view.targets and view.sources:
            ok, ratio = yield from latency_checking(ctx, view, profile, alive, source)
            stage_of[alive[~ok]] = STAGE_INDEX["latency"]
            ratio_of[alive[~ok]] = ratio[~ok]
            alive = alive[ok]
        if alive.size:
            ok, _ = ctx.rules.require(view, profile, alive)
            stage_of[alive[~ok]] = STAGE_INDEX["policy"]
            alive = alive[ok]
        passed[alive] = True
        # The same order as _better for one row: furthest stage, smallest overshoot;
        # on a tie the earlier profile stays.
        better = (stage_of < PASSED) & (
            (stage_of > best_stage) | ((stage_of == best_stage) & (ratio_of < best_ratio))
        )
        best_stage[better] = stage_of[better]
        best_ratio[better] = ratio_of[better]
        best_profile[better] = profile.index
    rows = np.flatnonzero((best_stage >= 0) & ~passed)
    return Diagnosis(
        rows,
        best_stage[rows],
        best_ratio[rows],
        best_profile[rows],
        np.flatnonzero(passed).tolist(),
        source,
    )


def _stage_for_source(
    ctx: PlanContext,
    view: WorkloadView,
    profile: ProfileView,
    rows: IntArray,
    key: str,
    stage: StageFn,
    source: int | None,
) -> StageResult:
    if source is None or key not in ("residency", "network"):
        return stage(ctx, view, profile, rows)
    ok = source_zone_ok(ctx, view, rows)[source]
    if key == "residency":
        allowed = view.workload.spec.residency
        if allowed:
            ok &= ctx.rows_in_zones(_zone_codes(ctx, allowed))[rows]
        return ok, None
    return ok & source_reachable(ctx, view, rows)[source] & _model_reachable(ctx, view, rows), None


def latency_checking(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, rows: IntArray, source: int | None
) -> prediction.Asking[tuple[BoolArray, FloatArray]]:
    """No-queue check per row (any source, or the given one) and the overshoot ratio.

    Bounds decide where they can — a row whose lower bound misses fails, with
    that bound's overshoot (the real one is at least that); one whose upper
    bound fits passes — and exact quantiles decide the rest. Only the ratios
    of failing rows are meaningful.
    """
    storage = storage_latency(ctx, view, rows)
    parts = latency_parts(ctx, view, profile, rows, storage)
    n_src = len(view.sources)
    usable = (source_zone_ok(ctx, view, rows) & source_reachable(ctx, view, rows)).ravel()
    bounds = []
    for q, target in view.targets:
        levels = np.full(parts.size, q)
        bounds.append((levels, target, *prediction.no_wait_bounds(levels, parts)))
    # Exact quantiles only where they can change the answer: for the source asked
    # about (if one), in rows no source passes on its upper bounds alone (a row that
    # passes is not reported, so its ratio need not be exact).
    sure = usable.reshape(n_src, rows.size).copy()
    for _, target, _, upper in bounds:
        sure &= (upper <= target).reshape(n_src, rows.size)
    asked = np.ones(n_src, dtype=bool) if source is None else np.arange(n_src) == source
    undecided = ~sure[asked].any(axis=0)
    needed = (asked[:, None] & undecided[None, :]).ravel()
    worst = np.zeros(n_src * rows.size)
    for levels, target, lower, upper in bounds:
        value = np.where(lower > target, lower, upper)
        unsure = np.flatnonzero(needed & usable & (lower <= target) & (upper > target))
        if unsure.size:
            value[unsure] = yield prediction.QuantileAsk(levels[unsure], parts.take(unsure))
        worst = np.maximum(worst, value / target)
    table = np.where(usable, worst, np.inf).reshape(n_src, rows.size)
    ratio = np.asarray(table[source] if source is not None else table.min(axis=0), dtype=np.float64)
    return ratio <= 1.0 + 1e-9, ratio


def reason(ctx: PlanContext, view: WorkloadView, miss: Miss) -> str:
    """One row's failure in words, e.g. 'store-12/edge: p99 62ms > 50ms SLO from store-12-cams'."""
    return prediction.answer(reasoning(ctx, view, miss))


def reasoning(ctx: PlanContext, view: WorkloadView, miss: Miss) -> prediction.Asking[str]:
    """:func:`reason`, asking for its exact quantiles (see ``prediction.answer_together``)."""
    profile = view.profiles[miss.profile]
    stage = STAGES[miss.stage][0]
    if stage == "latency":
        text = yield from _why_latency(ctx, view, profile, miss.row, miss)
    else:
        text = _REASONS[stage](ctx, view, profile, miss.row, miss)
    return f"{ctx.index.row_label(miss.row)}: {text}"


def _why_site(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, row: int, miss: Miss
) -> str:
    spec = ctx.index.site_of_row(row).spec
    return "site is cordoned" if spec.cordoned else "site is draining"


def _why_residency(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, row: int, miss: Miss
) -> str:
    zone = ctx.index.site_of_row(row).spec.residency_zone
    allowed = view.workload.spec.residency
    if allowed and zone not in allowed:
        return f"zone {zone} is not among the workload's zones {', '.join(allowed)}"
    index = miss.source if miss.source is not None else None
    sources = [view.sources[index]] if index is not None else list(view.sources)
    others = sorted({ctx.index.zones[s.zone] for s in sources if ctx.index.zones[s.zone] != zone})
    return f"zone {zone}; data must stay in {', '.join(others)}"


def _why_hardware(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, row: int, miss: Miss
) -> str:
    _, why = check_pool(ctx.index.pools[row], profile, view.accelerator)
    return why or "hardware does not match"


def _why_image(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, row: int, miss: Miss
) -> str:
    pool = ctx.index.pools[row]
    why = ctx.images.check(
        pool.node_image, pool.arch, ctx.requirement(view), profile.accelerator_model
    )
    return why or "node image does not match"


def _why_storage(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, row: int, miss: Miss
) -> str:
    media = view.workload.spec.storage.media
    have: list[str] = [m.media for m in ctx.index.pools[row].storage] or ["none"]
    wanted = ", ".join(media) if media else "any medium"
    return f"workload reads storage ({wanted}); pool has {', '.join(have)}"


def _why_capacity(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, row: int, miss: Miss
) -> str:
    pool = ctx.index.pools[row]
    return (
        f"one replica needs {view.cpu:g} cpu / {format_size(int(view.memory))}, "
        f"a node has {pool.cpu:g} cpu / {format_size(pool.memory)}"
    )


def _why_power(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, row: int, miss: Miss
) -> str:
    rows = np.array([row], dtype=np.int64)
    watts = float(replica_power(ctx, view, profile, rows)[0])
    budget = ctx.index.site_of_row(row).spec.power_budget or 0.0
    return f"one replica draws {watts:.0f} W, the site's budget is {budget:.0f} W"


def _why_deadline(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, row: int, miss: Miss
) -> str:
    runtime = profile.spec.runtime or 0.0
    deadline = view.workload.spec.slo.deadline or 0.0
    return (
        f"runs {format_duration(runtime)} on {profile.hardware}, "
        f"deadline {format_duration(deadline)}"
    )


def _why_network(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, row: int, miss: Miss
) -> str:
    rows = np.array([row], dtype=np.int64)
    if not _model_reachable(ctx, view, rows)[0]:
        return "no network path from any model registry mirror"
    reach = source_reachable(ctx, view, rows)[:, 0]
    missing = [s.name for s, ok in zip(view.sources, reach.tolist(), strict=True) if not ok]
    return f"no network path from {', '.join(missing[:3])}" if missing else "no network path"


def _why_latency(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, row: int, miss: Miss
) -> prediction.Asking[str]:
    rows = np.array([row], dtype=np.int64)
    storage = storage_latency(ctx, view, rows)
    parts = latency_parts(ctx, view, profile, rows, storage)
    usable = (source_zone_ok(ctx, view, rows) & source_reachable(ctx, view, rows))[:, 0]
    candidates = (
        [miss.source]
        if miss.source is not None
        else [i for i, ok in enumerate(usable.tolist()) if ok]
    )
    best: tuple[float, str] | None = None
    # Every (target, source) quantile asked for at once: the call's fixed cost is most of it.
    picked = np.array(candidates * len(view.targets), dtype=np.int64)
    levels = np.repeat([q for q, _ in view.targets], len(candidates))
    found = (yield prediction.QuantileAsk(levels, parts.take(picked))).tolist()
    n = len(candidates)
    for t, (q, target) in enumerate(view.targets):
        values = dict(zip(candidates, found[t * n : (t + 1) * n], strict=True))
        for i in candidates:
            ratio = float(values[i] / target)
            label = _percentile_label(q)
            text = (
                f"{label} {format_duration(float(values[i]))} > {format_duration(target)} SLO "
                f"from {view.sources[i].name} (on {profile.hardware}, before queueing)"
            )
            if ratio > 1.0 and (best is None or ratio < best[0]):
                best = (ratio, text)
    return best[1] if best else "latency targets not met"


def _why_policy(
    ctx: PlanContext, view: WorkloadView, profile: ProfileView, row: int, miss: Miss
) -> str:
    rows = np.array([row], dtype=np.int64)
    _, failed = ctx.rules.require(view, profile, rows)
    index = int(failed[0])
    if index < 0:
        return "a policy rule does not hold"
    rule = ctx.policy.resource.spec.rules[index]
    return f"rule {rule.name!r} requires {rule.require}"


_REASONS: dict[str, Callable[[PlanContext, WorkloadView, ProfileView, int, Miss], str]] = {
    "site": _why_site,
    "residency": _why_residency,
    "hardware": _why_hardware,
    "image": _why_image,
    "storage": _why_storage,
    "capacity": _why_capacity,
    "power": _why_power,
    "deadline": _why_deadline,
    "network": _why_network,
    "policy": _why_policy,
    # "latency": _why_latency, which asks for exact quantiles (see reasoning).
}


def _percentile_label(q: float) -> str:
    for key, value in PERCENTILES.items():
        if value == q:
            return key
    return f"q{q:g}"
