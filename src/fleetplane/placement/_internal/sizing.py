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

from dataclasses import dataclass, replace

import numpy as np

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
    merged = prediction.Parts(
        *(cat([getattr(p, f) for p in parts]) for f in prediction.Parts.__dataclass_fields__)
    )
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
        prediction.Parts(
            *(
                cat([getattr(b.parts, f) for b in blocks])
                for f in prediction.Parts.__dataclass_fields__
            )
        ),
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


def conservative(requests: list[Request]) -> list[IntArray]:
    """Replicas per candidate of each request; UNSIZEABLE where the bound shows no count works."""
    offsets = np.cumsum([0] + [req.idx.size for req in requests])
    n = np.concatenate([_floor(req) for req in requests]) if requests else np.zeros(0, np.int64)
    el = _elements(requests)
    if el.owner.size:
        servers = prediction.conservative_servers(el.lam, el.q, el.target, el.parts, el.c_max)
        replicas = np.where(servers > 0, -(-servers // el.concurrency), 10**12)
        # One scatter over all requests' slots (a per-request mask is quadratic in the batch).
        np.maximum.at(n, offsets[el.owner] + el.col, replicas)
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
    el = _elements(requests)
    out = [c.copy() for c in counts]
    if not el.owner.size:
        return out
    offsets = np.cumsum([0] + [req.idx.size for req in requests])
    slot = offsets[el.owner] + el.col
    n = np.concatenate(out)
    floor = np.concatenate([_floor(req) for req in requests])
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
