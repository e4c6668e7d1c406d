"""Replica counts: enough to carry the peak demand routed to a candidate within every target.

A site running ``n`` replicas of a profile with ``concurrency`` k is one
M/G/(n·k) queue (replicas behind one load balancer), fed with the peak rate
of the sources routed there (scaled up to the throughput SLO if that is
higher). The count must meet every latency percentile target for every
source it serves (each source has its own round trip), stay within the
workload's replica bounds, and be at least the minimum.

Two ways to get it, both over many elements at once:

* :func:`conservative` — closed form via the union bound (prediction.py):
  cheap enough for every candidate the solver looks at, and never too few;
* :func:`exact` — the smallest count whose exact end-to-end quantiles meet the
  targets (fleetplane.latency), by galloping then bisection; used to trim the
  counts the solver chose and where the bound cannot decide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from fleetplane.latency.queueing import mgc_wait_many
from fleetplane.placement._internal import prediction
from fleetplane.placement._internal.candidates import Candidates
from fleetplane.placement._internal.fleet_index import BoolArray, FloatArray, IntArray

UNSIZEABLE = 0


@dataclass(frozen=True)
class Request:
    """Size candidates ``idx`` of one workload, each serving the sources in ``groups[:, j]``.

    ``load[j]`` is the design arrival rate at candidate ``idx[j]``.
    """

    cands: Candidates
    idx: IntArray
    groups: BoolArray  # (sources × len(idx))
    load: FloatArray


def design_rates(cands: Candidates) -> FloatArray:
    """Per source: the peak rate a candidate must absorb if it serves all of the source."""
    view = cands.view
    return np.array([s.rate for s in view.sources], dtype=np.float64) * view.design_factor


@dataclass(frozen=True)
class _Elements:
    owner: IntArray  # request number
    col: IntArray  # position within the request
    lam: FloatArray
    q: FloatArray
    target: FloatArray
    concurrency: IntArray
    c_max: IntArray
    parts: prediction.Parts


# From this many requests on, their elements are gathered in flat arrays
# (a fixed number of numpy calls) instead of request by request.
_FLAT_FROM = 64


def _elements(requests: list[Request]) -> _Elements:
    if len(requests) >= _FLAT_FROM:
        return _elements_flat(requests)
    owners, cols, lams, qs, targets, ks, cmax = [], [], [], [], [], [], []
    parts: list[prediction.Parts] = []
    for r, req in enumerate(requests):
        cands, view = req.cands, req.cands.view
        if view.is_job or not view.targets:
            continue
        src, col = np.nonzero(req.groups)
        if not col.size:
            continue
        cand = req.idx[col]
        k = cands.concurrency[cand]
        base = prediction.Parts(
            rtt_mu=cands.rtt_mu[src, cand],
            rtt_sigma=cands.rtt_sigma[src, cand],
            loss=cands.loss[src, cand],
            storage=cands.storage[cand],
            svc_mean=cands.svc_mean[cand],
            svc_cv=cands.svc_cv[cand],
        )
        for q, target in view.targets:
            owners.append(np.full(col.size, r))
            cols.append(col)
            lams.append(req.load[col])
            qs.append(np.full(col.size, q))
            targets.append(np.full(col.size, target))
            ks.append(k)
            cmax.append(k * view.max_replicas)
            parts.append(base)
    if not owners:
        return _no_elements()
    cat = np.concatenate
    merged = prediction.Parts.concat(parts)
    return _Elements(
        cat(owners), cat(cols), cat(lams), cat(qs), cat(targets), cat(ks), cat(cmax), merged
    )


# Requests gathered together by _elements_flat (bounds its temporary copies of
# the candidate tables' per-source arrays).
_FLAT_BLOCK = 2048


def _elements_flat(requests: list[Request]) -> _Elements:
    """:func:`_elements` for many requests at once: the same elements in the same order."""
    if len(requests) <= _FLAT_BLOCK:
        return _elements_block(requests)
    blocks = []
    for start in range(0, len(requests), _FLAT_BLOCK):
        block = _elements_block(requests[start : start + _FLAT_BLOCK])
        blocks.append(replace(block, owner=block.owner + start))
    cat = np.concatenate
    return _Elements(
        cat([b.owner for b in blocks]),
        cat([b.col for b in blocks]),
        cat([b.lam for b in blocks]),
        cat([b.q for b in blocks]),
        cat([b.target for b in blocks]),
        cat([b.concurrency for b in blocks]),
        cat([b.c_max for b in blocks]),
        prediction.Parts.concat([b.parts for b in blocks]),
    )


def _no_elements() -> _Elements:
    empty_i = np.zeros(0, dtype=np.int64)
    empty_f = np.zeros(0)
    return _Elements(
        empty_i,
        empty_i,
        empty_f,
        empty_f,
        empty_f,
        empty_i,
        empty_i,
        prediction.Parts(empty_f, empty_f, empty_f, empty_f, empty_f, empty_f),
    )


def _elements_block(requests: list[Request]) -> _Elements:
    chosen = [
        r
        for r, req in enumerate(requests)
        if not req.cands.view.is_job and req.cands.view.targets and req.groups.size
    ]
    if not chosen:
        return _no_elements()
    reqs = [requests[r] for r in chosen]
    cat = np.concatenate

    def starts(sizes: list[int]) -> IntArray:
        return np.asarray(np.cumsum([0, *sizes[:-1]]), dtype=np.int64)

    width = np.array([req.idx.size for req in reqs], dtype=np.int64)
    size = np.array([req.cands.size for req in reqs], dtype=np.int64)
    flags = cat([req.groups.ravel() for req in reqs])
    group_start = starts([req.groups.size for req in reqs])
    nz = np.flatnonzero(flags)
    if not nz.size:
        return _no_elements()
    which = np.searchsorted(group_start, nz, side="right") - 1  # position in reqs
    src, col = np.divmod(nz - group_start[which], width[which])
    idx_start = starts([req.idx.size for req in reqs])
    cand = cat([req.idx for req in reqs])[idx_start[which] + col]
    cand_start = starts([req.cands.size for req in reqs])
    one = cand_start[which] + cand
    two = starts([req.cands.rtt_mu.size for req in reqs])[which] + src * size[which] + cand
    k = cat([req.cands.concurrency for req in reqs])[one]
    base = prediction.Parts(
        rtt_mu=cat([req.cands.rtt_mu.ravel() for req in reqs])[two],
        rtt_sigma=cat([req.cands.rtt_sigma.ravel() for req in reqs])[two],
        loss=cat([req.cands.loss.ravel() for req in reqs])[two],
        storage=cat([req.cands.storage for req in reqs])[one],
        svc_mean=cat([req.cands.svc_mean for req in reqs])[one],
        svc_cv=cat([req.cands.svc_cv for req in reqs])[one],
    )
    lam = cat([req.load for req in reqs])[idx_start[which] + col]
    # Every request's elements once per target, targets in order: block (request, target).
    n_targets = np.array([len(req.cands.view.targets) for req in reqs], dtype=np.int64)
    count = np.bincount(which, minlength=len(reqs))
    nz_start = starts(count.tolist())
    pair_req = np.repeat(np.arange(len(reqs)), n_targets)
    pair_target = cat([np.arange(t) for t in n_targets.tolist()]) + np.repeat(
        starts(n_targets.tolist()), n_targets
    )
    pair_len = count[pair_req]
    pair_start = starts(pair_len.tolist())
    pair = np.repeat(np.arange(pair_req.size), pair_len)
    element = nz_start[pair_req[pair]] + np.arange(pair.size) - pair_start[pair]
    levels = np.array([q for req in reqs for q, _ in req.cands.view.targets], dtype=np.float64)
    limits = np.array([t for req in reqs for _, t in req.cands.view.targets], dtype=np.float64)
    max_replicas = np.array([req.cands.view.max_replicas for req in reqs], dtype=np.int64)
    owner = np.array(chosen, dtype=np.int64)[which[element]]
    return _Elements(
        owner,
        col[element],
        lam[element],
        levels[pair_target[pair]],
        limits[pair_target[pair]],
        k[element],
        k[element] * max_replicas[which[element]],
        base.take(element),
    )


def _floor(req: Request) -> IntArray:
    """Fewest replicas before latency: the minimum and a stable queue at the design load."""
    view = req.cands.view
    n = np.full(req.idx.size, view.min_replicas, dtype=np.int64)
    if view.is_job or not view.sources:
        return n
    servers = prediction.stable_servers(req.load, req.cands.svc_mean[req.idx])
    return np.asarray(np.maximum(n, -(-servers // req.cands.concurrency[req.idx])), dtype=np.int64)


def _floors(requests: list[Request]) -> IntArray:
    """``np.concatenate([_floor(req) for req in requests])``, for many requests at once."""
    if len(requests) < _FLAT_FROM:
        return (
            np.concatenate([_floor(req) for req in requests]) if requests else np.zeros(0, np.int64)
        )
    views = [req.cands.view for req in requests]
    sizes = [req.idx.size for req in requests]
    n = np.repeat(np.array([v.min_replicas for v in views], dtype=np.int64), sizes)
    flags = [bool(v.sources) and not v.is_job for v in views]
    if any(flags):
        at = np.repeat(np.array(flags, dtype=bool), sizes)
        chosen = [req for req, timed in zip(requests, flags, strict=True) if timed]
        servers = prediction.stable_servers(
            np.concatenate([req.load for req in chosen]).astype(np.float64, copy=False),
            np.concatenate([req.cands.svc_mean[req.idx] for req in chosen]),
        )
        k = np.concatenate([req.cands.concurrency[req.idx] for req in chosen])
        n[at] = np.maximum(n[at], -(-servers // k))
    return n


# conservative() leaves its elements and floors for a tighten() of the same requests (the
# usual pair): one entry, taken by the next tighten() or replaced by the next conservative().
_HANDOVER: list[tuple[list[Request], _Elements, IntArray]] = []


def _elements_and_floors(requests: list[Request]) -> tuple[_Elements, IntArray]:
    if _HANDOVER:
        held, el, floor = _HANDOVER.pop()
        if len(held) == len(requests) and all(a is b for a, b in zip(held, requests, strict=True)):
            return el, floor
    return _elements(requests), _floors(requests)


def conservative(requests: list[Request]) -> list[IntArray]:
    """Replicas per candidate of each request; UNSIZEABLE where the bound shows no count works."""
    _HANDOVER.clear()
    offsets = np.cumsum([0] + [req.idx.size for req in requests])
    floor = _floors(requests)
    n = floor.copy()
    el = _elements(requests)
    if el.owner.size:
        servers = prediction.conservative_servers(el.lam, el.q, el.target, el.parts, el.c_max)
        replicas = np.where(servers > 0, -(-servers // el.concurrency), 10**12)
        # One scatter over all requests' slots (a per-request mask is quadratic in the batch).
        np.maximum.at(n, offsets[el.owner] + el.col, replicas)
    if len(requests) >= _FLAT_FROM:
        _HANDOVER.append((list(requests), el, floor))
    out = []
    for r, req in enumerate(requests):
        mine = n[offsets[r] : offsets[r + 1]]
        out.append(np.where(mine > req.cands.view.max_replicas, UNSIZEABLE, mine).astype(np.int64))
    return out


def conservative_one(req: Request) -> IntArray:
    return conservative([req])[0]


def tighten(requests: list[Request], counts: list[IntArray]) -> list[IntArray]:
    """Take back replicas the union bound with the actual Erlang-C factor shows are spare.

    Counts from :func:`conservative` assume every request waits; with the
    real probability of waiting, the same proof often holds with one or two
    replicas fewer. Only counts whose bound holds are lowered, so the result
    is still proven to meet every target (never below the floor).
    """
    el, floor = _elements_and_floors(requests)
    out = [c.copy() for c in counts]
    if not el.owner.size:
        return out
    offsets = np.cumsum([0] + [req.idx.size for req in requests])
    slot = offsets[el.owner] + el.col
    n = np.concatenate(out)
    active = np.flatnonzero((n > floor) & (n > 0))
    while active.size:
        trial = n.copy()
        trial[active] -= 1
        take = np.isin(slot, active)
        elements = np.flatnonzero(take)
        holds = prediction.bound_holds(
            el.lam[elements],
            trial[slot[elements]] * el.concurrency[elements],
            el.q[elements],
            el.target[elements],
            el.parts.take(elements),
        )
        good = np.ones(n.size, dtype=bool)
        np.logical_and.at(good, slot[elements], holds)
        lowered = active[good[active]]
        n[lowered] -= 1
        active = lowered[n[lowered] > floor[lowered]]
    return [n[offsets[r] : offsets[r + 1]].astype(np.int64) for r in range(len(requests))]


def proven(requests: list[Request], counts: list[IntArray]) -> list[BoolArray]:
    """Per candidate of each request: the bound proves ``counts`` meets every target."""
    el = _elements(requests)
    offsets = np.cumsum([0] + [req.idx.size for req in requests])
    good = np.ones(int(offsets[-1]), dtype=bool)
    if el.owner.size:
        slot = offsets[el.owner] + el.col
        n = np.concatenate(counts)
        holds = prediction.bound_holds(el.lam, n[slot] * el.concurrency, el.q, el.target, el.parts)
        np.logical_and.at(good, slot, holds)
    return [good[offsets[r] : offsets[r + 1]] for r in range(len(requests))]


def exact(requests: list[Request], upper: list[IntArray] | None = None) -> list[IntArray]:
    """Smallest replica counts meeting every target exactly (UNSIZEABLE if none within bounds).

    ``upper`` are counts already known to work (e.g. conservative ones); the
    search then only looks below them.
    """
    lo = [_floor(req) for req in requests]
    el = _elements(requests)
    hi_known = (
        list(upper)
        if upper is not None
        else [np.zeros(req.idx.size, dtype=np.int64) for req in requests]
    )
    result = []
    if not el.owner.size:
        return [
            np.where(lo_r > req.cands.view.max_replicas, UNSIZEABLE, lo_r)
            for lo_r, req in zip(lo, requests, strict=True)
        ]
    # Flatten every (request, column) into one "slot" so the search runs in lock step.
    offsets = np.cumsum([0] + [req.idx.size for req in requests])
    slot = offsets[el.owner] + el.col
    n_slots = int(offsets[-1])
    low = np.concatenate(lo) if lo else np.zeros(0, dtype=np.int64)
    maxr = np.concatenate([np.full(req.idx.size, req.cands.view.max_replicas) for req in requests])
    known = np.concatenate(hi_known)
    high = np.where(known > 0, known, 0)

    # ok(n) per slot: every element of the slot meets its target with n replicas.
    def ok(n: IntArray, slots: IntArray) -> BoolArray:
        take = np.isin(slot, slots)
        elements = np.flatnonzero(take)
        passed = prediction.meets(
            el.lam[elements],
            n[slot[elements]] * el.concurrency[elements],
            el.q[elements],
            el.target[elements],
            el.parts.take(elements),
        )
        good = np.ones(n_slots, dtype=bool)
        np.logical_and.at(good, slot[elements], passed)
        return good[slots]

    # Galloping: find a working count for slots without one (probe floor, +1, +3, +7, ...).
    # A floor above the bound (a stable queue alone needs more replicas than
    # replicas.max allows) can never be met.
    high[(high == 0) & (low > maxr)] = -1
    need = np.flatnonzero(high == 0)
    probe = low.copy()
    step = np.ones(n_slots, dtype=np.int64)
    while need.size:
        passed = ok(probe, need)
        high[need[passed]] = probe[need[passed]]
        failed = need[~passed]
        low[failed] = probe[failed] + 1
        step[failed] *= 2
        probe[failed] = np.minimum(low[failed] + step[failed] - 1, maxr[failed])
        exhausted = low[failed] > maxr[failed]
        high[failed[exhausted]] = -1
        need = failed[~exhausted]
    # Bisection between the last failure and the first success.
    active = np.flatnonzero((high > 0) & (low < high))
    while active.size:
        mid = (low + high) // 2
        passed = ok(mid, active)
        high[active[passed]] = mid[active[passed]]
        low[active[~passed]] = mid[active[~passed]] + 1
        active = active[low[active] < high[active]]
    high_final = np.where(high > 0, high, UNSIZEABLE)
    for r in range(len(requests)):
        result.append(high_final[offsets[r] : offsets[r + 1]].astype(np.int64))
    return result


# Per path of a table (targets in order, then its source_ok cells in row-major order): the
# wait's time budget and allowed miss (prediction._wait_budget).
WaitBudgets = tuple[FloatArray, FloatArray]


def wait_budgets(tables: list[Candidates]) -> list[WaitBudgets | None]:
    """:class:`StarSizer`'s load-independent path parts of many tables, in one vectorised pass.

    None for a table without latency targets (a job, or no data sources).
    """
    chosen = [
        i
        for i, c in enumerate(tables)
        if c.view.sources and not c.view.is_job and c.view.targets and c.size
    ]
    out: list[WaitBudgets | None] = [None] * len(tables)
    if not chosen:
        return out
    reqs = [tables[i] for i in chosen]
    cat = np.concatenate

    def starts(sizes: list[int]) -> IntArray:
        return np.asarray(np.cumsum([0, *sizes[:-1]]), dtype=np.int64)

    # Each table's paths in row-major (source, candidate) order, as np.nonzero gives them.
    mus, sigmas, losses, cands_of = [], [], [], []
    for c in reqs:
        src, cand = np.nonzero(c.source_ok)
        mus.append(c.rtt_mu[src, cand])
        sigmas.append(c.rtt_sigma[src, cand])
        losses.append(c.loss[src, cand])
        cands_of.append(cand)
    count = np.array([a.size for a in cands_of], dtype=np.int64)
    one = cat(cands_of) + np.repeat(starts([c.size for c in reqs]), count)
    n_targets = np.array([len(c.view.targets) for c in reqs], dtype=np.int64)
    # Every table's paths once per target, targets in order: blocks (table, target).
    pair_table = np.repeat(np.arange(len(reqs)), n_targets)
    pair_len = count[pair_table]
    pair_start = starts(pair_len.tolist())
    pair = np.repeat(np.arange(pair_table.size), pair_len)
    element = starts(count.tolist())[pair_table[pair]] + np.arange(pair.size) - pair_start[pair]
    levels = np.array([q for c in reqs for q, _ in c.view.targets], dtype=np.float64)[pair]
    limits = np.array([x for c in reqs for _, x in c.view.targets], dtype=np.float64)[pair]
    ones = one[element]
    parts = prediction.Parts(
        rtt_mu=cat(mus)[element],
        rtt_sigma=cat(sigmas)[element],
        loss=cat(losses)[element],
        storage=cat([c.storage for c in reqs])[ones],
        svc_mean=cat([c.svc_mean for c in reqs])[ones],
        svc_cv=cat([c.svc_cv for c in reqs])[ones],
    )
    budget, allowed = prediction._wait_budget(levels, limits, parts)
    bounds = np.cumsum([0, *(count * n_targets).tolist()]).tolist()
    for r, i in enumerate(chosen):
        out[i] = (budget[bounds[r] : bounds[r + 1]], allowed[bounds[r] : bounds[r + 1]])
    return out


class StarSizer:
    """:func:`conservative` then :func:`tighten` for one workload's candidates, cheaply.

    A solver sizes the same workload's candidates many times, a few columns
    at a time, for different sets of sources. What does not depend on the
    load of a column — per (target, source, candidate) path, the wait's time
    budget and allowed miss, and the conservative bound's drain term — is
    computed once here (dense arrays, targets × sources × candidates), so a
    call is a few array operations over (targets × sources × columns) blocks
    instead of building flat element arrays and the latency parts again.
    The Erlang-C factor depends only on the column (its load, servers and
    service), so it is computed per column. Counts are the same, value for
    value: the same element-wise operations on the same inputs.

    Only groups within ``cands.source_ok`` are supported (a solver never asks
    for a source a candidate may not serve); :meth:`size` falls back to the
    general functions otherwise.
    """

    def __init__(self, cands: Candidates, paths: WaitBudgets | None = None) -> None:
        view = cands.view
        self.cands = cands
        self.min_replicas = view.min_replicas
        self.max_replicas = view.max_replicas
        self.sources = bool(view.sources) and not view.is_job
        self.timed = self.sources and bool(view.targets)
        self.svc_mean = cands.svc_mean
        self.svc_cv = cands.svc_cv
        self.concurrency = np.asarray(cands.concurrency, dtype=np.int64)
        n_t, (n_s, n_c) = len(view.targets), cands.source_ok.shape
        shape = (n_t, n_s, n_c)
        self.budget = np.full(shape, -np.inf)
        self.allowed = np.zeros(shape)
        self.ok = np.zeros(shape, dtype=bool)
        self.drain = np.zeros(shape)
        if not self.timed:
            return
        if paths is None:
            paths = wait_budgets([cands])[0]
        assert paths is not None
        budget, allowed = paths
        # The order wait_budgets() lays out a table's paths in: target, then (source, candidate).
        src, cand = np.nonzero(cands.source_ok)
        t = np.repeat(np.arange(n_t), src.size)
        s, c = np.tile(src, n_t), np.tile(cand, n_t)
        # As prediction.conservative_servers computes them.
        ok = (budget > 0.0) & np.isfinite(budget) & (allowed > 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            drain = (
                (1.0 + cands.svc_cv[c] ** 2)
                * np.log(1.0 / np.where(ok, allowed, 0.5))
                / (2.0 * np.where(ok, budget, 1.0))
            )
        self.budget[t, s, c] = budget
        self.allowed[t, s, c] = allowed
        self.ok[t, s, c] = ok
        self.drain[t, s, c] = drain

    def floor(self, idx: IntArray, load: FloatArray) -> IntArray:
        """:func:`_floor` of ``Request(cands, idx, ..., load)``."""
        n = np.full(idx.size, self.min_replicas, dtype=np.int64)
        if not self.sources:
            return n
        servers = prediction.stable_servers(load, self.svc_mean[idx])
        return np.asarray(np.maximum(n, -(-servers // self.concurrency[idx])), dtype=np.int64)

    def size(self, idx: IntArray, groups: BoolArray, load: FloatArray) -> IntArray:
        """``tighten([req], conservative([req]))[0]`` for ``Request(cands, idx, groups, load)``."""
        floor = self.floor(idx, load)
        if not self.timed or not idx.size or not groups.any():
            return np.asarray(np.where(floor > self.max_replicas, UNSIZEABLE, floor), np.int64)
        if bool((groups & ~self.cands.source_ok[:, idx]).any()):
            req = Request(self.cands, idx, groups, load)
            return tighten([req], conservative([req]))[0]
        k = self.concurrency[idx]
        mask = groups[None, :, :]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            servers = np.ceil(self.svc_mean[idx] * (load + self.drain[:, :, idx]) * (1.0 - 1e-12))
        servers = np.where(self.ok[:, :, idx] & np.isfinite(servers), np.maximum(servers, 1.0), 0.0)
        found = servers.astype(np.int64)
        found = np.where(found > k * self.max_replicas, 0, found)
        replicas = np.where(found > 0, -(-found // k), 10**12)
        need = np.where(mask, replicas, 0).max(axis=(0, 1))
        n = np.maximum(floor, need)
        n = np.where(n > self.max_replicas, UNSIZEABLE, n).astype(np.int64)
        active = np.flatnonzero((n > floor) & (n > 0))
        while active.size:
            holds = self._holds(idx[active], load[active], (n[active] - 1) * k[active])
            good = np.all(holds | ~mask[:, :, active], axis=(0, 1))
            lowered = active[good]
            n[lowered] -= 1
            active = lowered[n[lowered] > floor[lowered]]
        return n

    def _holds(self, cols: IntArray, lam: FloatArray, servers: IntArray) -> BoolArray:
        """:func:`prediction.bound_holds` for every (target, source) path of columns ``cols``."""
        servers = np.maximum(servers, 1)
        mean, cv = self.svc_mean[cols], self.svc_cv[cols]
        with np.errstate(divide="ignore", invalid="ignore"):
            drain = servers / mean - lam
            theta = np.where(drain > 0.0, (1.0 + cv**2) / (2.0 * drain), np.inf)
        c = np.ones(lam.size)
        small = np.flatnonzero((servers <= prediction.ERLANG_SERVERS) & (drain > 0.0))
        if small.size > _SCALAR_WAIT:
            # As prediction.wait_params computes them.
            p_wait, wait_theta = mgc_wait_many(lam[small], mean[small], cv[small], servers[small])
            c[small] = np.asarray(p_wait, dtype=np.float64)
            theta[small] = np.asarray(wait_theta, dtype=np.float64)
        elif small.size:
            for j in small.tolist():
                c[j], theta[j] = _mgc_wait(
                    float(lam[j]), float(mean[j]), float(cv[j]), int(servers[j])
                )
        budget = self.budget[:, :, cols]
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            tail = c * np.exp(-np.maximum(budget, 0.0) / theta)
        return np.asarray((budget > 0.0) & np.isfinite(theta) & (tail <= self.allowed[:, :, cols]))


# Up to this many columns, the Erlang-C factor is computed column by column in plain Python.
_SCALAR_WAIT = 32


def _mgc_wait(lam: float, mean: float, cv: float, servers: int) -> tuple[float, float]:
    """``fleetplane.latency.queueing.mgc_wait_many`` for one element, the same operations.

    (Erlang-B recursion, Erlang C from it, Allen–Cunneen's exponential mean;
    ``1, inf`` for an unstable queue.) Plain floats give the same values as
    numpy's element-wise float64 operations, without its per-call overhead.
    """
    if not (lam >= 0.0 and mean > 0.0 and cv >= 0.0):
        raise ValueError("need lam >= 0, svc_mean > 0 and svc_cv >= 0 everywhere")
    slack = servers / mean - lam
    if not slack > 0.0:
        return 1.0, math.inf
    a = lam * mean
    if not (math.isfinite(a) and a >= 0.0) or servers < 1:
        raise ValueError("need every c >= 1 and every load a finite and >= 0")
    b = 1.0
    for k in range(1, servers + 1):
        b = a * b / (k + a * b)
    c = float(servers)
    p_wait = min(max(c * b / (c - a * (1.0 - b)), 0.0), 1.0) if a < c else 1.0
    return p_wait, 0.5 * (1.0 + cv * cv) / slack
