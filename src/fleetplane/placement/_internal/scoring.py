"""Scoring: the objective a solver minimises, split into terms it can add up quickly.

For a candidate ``c`` running ``n`` replicas and receiving a fraction ``f_s``
of each data source ``s``::

    objective = n · per_replica[c] + per_site[c] + Σ_s f_s · per_source[s, c] + α · per_share[c]

* ``per_replica`` — compute (× cost weight) and always-on energy (× energy weight);
  for jobs also the busy energy, since a job keeps its replicas busy;
* ``per_site`` — model distribution to the site (× cost weight);
* ``per_source`` — egress and per-request / busy energy of all of source ``s``'s
  traffic, plus the policy terms in proportion to the source's share of the
  workload's demand: prefer penalties and the latency weight × estimated p99;
* ``per_share`` — the policy terms of workloads without demand (jobs), scaled by
  the allocation's share ``α`` of the workload (½ each for a spread pair).

The estimated p99 used for the latency weight is the sum of the round-trip
and service p99s without queueing: a ranking proxy, cheap for every
candidate; reported latencies are exact (prediction.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fleetplane.model.placement import CostBreakdown
from fleetplane.model.policy import Objective
from fleetplane.placement._internal import prediction
from fleetplane.placement._internal.candidates import Allocation, Candidates
from fleetplane.placement._internal.fleet_index import FloatArray, IntArray


@dataclass(frozen=True)
class Scorer:
    cands: Candidates
    per_replica: FloatArray
    per_site: FloatArray
    per_source: FloatArray  # (sources × candidates)
    per_share: FloatArray
    source_weight: FloatArray  # share of the workload's demand per source

    def objective_one(self, c: int, replicas: int, shares: Sequence[float], alpha: float) -> float:
        """``objective([c], [replicas], shares[:, None], alpha)[0]`` in plain floats.

        The same operations in the same order, so the same value to the last
        bit (a candidate's source terms are summed pairwise, as numpy sums a
        contiguous row), without a dozen numpy calls on one-element arrays.
        """
        total: float = (
            replicas * float(self.per_replica[c])
            + float(self.per_site[c])
            + alpha * float(self.per_share[c])
        )
        if len(shares):
            column = self.per_source[:, c].tolist()
            terms = [f * (x if f > 0 else 0.0) for f, x in zip(shares, column, strict=True)]
            total = total + _pairwise_sum(terms, 0, len(terms))
        return total

    def objective(
        self, idx: IntArray, replicas: IntArray, shares: FloatArray, alpha: float
    ) -> FloatArray:
        """Objective of candidates ``idx`` with ``replicas`` and source fractions ``shares``."""
        total = replicas * self.per_replica[idx] + self.per_site[idx] + alpha * self.per_share[idx]
        if shares.shape[0]:
            per_source = np.where(shares > 0, self.per_source[:, idx], 0.0)
            # Each candidate's source terms summed along a contiguous row: numpy sums those
            # pairwise, the same way whatever the number of candidates (summing a column of
            # a wider array it would add row by row), so a candidate's objective does not
            # depend on which others it is priced with, and objective_one can match it.
            terms = np.ascontiguousarray((shares * per_source).T)
            total = total + terms.sum(axis=1)
        return np.asarray(total, dtype=np.float64)


def _pairwise_sum(a: list[float], start: int, n: int) -> float:
    """numpy's pairwise summation of ``a[start:start + n]`` (how it sums one contiguous axis)."""
    if n < 8:
        res = 0.0
        for i in range(start, start + n):
            res += a[i]
        return res
    if n <= 128:
        r = a[start : start + 8]
        i = 8
        while i < n - n % 8:
            for j in range(8):
                r[j] += a[start + i + j]
            i += 8
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
        for k in range(i, n):
            res += a[start + k]
        return res
    half = n // 2
    half -= half % 8
    return _pairwise_sum(a, start, half) + _pairwise_sum(a, start + half, n - half)


def source_weights(cands: Candidates) -> FloatArray:
    view = cands.view
    rates = np.array([s.rate for s in view.sources], dtype=np.float64)
    if not rates.size:
        return rates
    total = rates.sum()
    return rates / total if total > 0 else np.full(rates.size, 1.0 / rates.size)


def _busy(cands: Candidates) -> FloatArray:
    """(sources × candidates): replicas kept busy on average by all of each source."""
    view = cands.view
    avg = np.array([s.rate * s.mean_factor for s in view.sources], dtype=np.float64)
    if view.is_job or not avg.size:
        return np.zeros((avg.size, cands.size))
    return np.asarray(
        avg[:, None] * cands.svc_mean[None, :] / cands.concurrency[None, :], dtype=np.float64
    )


def _requests(cands: Candidates) -> FloatArray:
    return np.array([s.monthly_requests for s in cands.view.sources], dtype=np.float64)


def latency_estimate(cands: Candidates) -> FloatArray:
    """(sources × candidates) ranking proxy for p99: round-trip p99 + storage + service p99.

    Computed once per table, for every table of its feasibility batch at once
    (one vectorised pass instead of a few dozen numpy calls per workload).
    """
    if cands.p99_estimate is None:
        tables = [c for c in (cands.batch or [cands]) if c.p99_estimate is None]
        if not any(c is cands for c in tables):
            tables.append(cands)
        for table, estimate in zip(tables, _latency_estimates(tables), strict=True):
            table.p99_estimate = estimate
    assert cands.p99_estimate is not None
    return cands.p99_estimate


def _latency_estimates(tables: list[Candidates]) -> list[FloatArray]:
    timed = [c for c in tables if not c.view.is_job and c.view.sources and c.size]
    done = {id(c) for c in timed}
    out = {id(c): np.zeros((len(c.view.sources), c.size)) for c in tables if id(c) not in done}
    if timed:
        shapes = [c.rtt_mu.shape for c in timed]
        # Per (source, candidate) cell, row-major: the candidate's position in the
        # concatenated per-candidate arrays (each table's cells take its candidates in turn).
        cells = np.array([a * b for a, b in shapes], dtype=np.int64)
        width = np.array([b for _, b in shapes], dtype=np.int64)
        cand_start = np.cumsum([0, *width[:-1].tolist()])
        cell_start = np.cumsum([0, *cells[:-1].tolist()])
        within = np.arange(int(cells.sum())) - np.repeat(cell_start, cells)
        one = np.repeat(cand_start, cells) + within % np.repeat(width, cells)
        parts = prediction.Parts(
            rtt_mu=np.concatenate([c.rtt_mu.ravel() for c in timed]),
            rtt_sigma=np.concatenate([c.rtt_sigma.ravel() for c in timed]),
            loss=np.concatenate([c.loss.ravel() for c in timed]),
            storage=np.concatenate([c.storage for c in timed])[one],
            svc_mean=np.concatenate([c.svc_mean for c in timed])[one],
            svc_cv=np.concatenate([c.svc_cv for c in timed])[one],
        )
        est = (
            parts.storage
            + prediction.rtt_quantile(0.99, parts)
            + prediction.service_quantile(0.99, parts.svc_mean, parts.svc_cv)
        )
        ends = np.cumsum([a * b for a, b in shapes]).tolist()
        for c, piece, shape in zip(timed, np.split(est, ends[:-1]), shapes, strict=True):
            out[id(c)] = np.asarray(piece.reshape(shape), dtype=np.float64)
    return [out[id(c)] for c in tables]


def build_scorer(cands: Candidates, objective: Objective) -> Scorer:
    w_cost, w_energy, w_latency = objective.cost, objective.energy, objective.latency
    rates = cands.rates
    per_replica = w_cost * rates.compute + w_energy * rates.energy_idle
    if cands.view.is_job:
        per_replica = per_replica + w_energy * rates.energy_busy
    weights = source_weights(cands)
    per_source = (
        w_cost * cands.egress
        + w_energy
        * (
            _requests(cands)[:, None] * rates.energy_request[None, :]
            + _busy(cands) * rates.energy_busy[None, :]
        )
        + weights[:, None] * cands.penalty[None, :]
    )
    if w_latency > 0:
        per_source = per_source + weights[:, None] * w_latency * latency_estimate(cands)
    per_share = cands.penalty if not len(cands.view.sources) else np.zeros(cands.size)
    return Scorer(
        cands=cands,
        per_replica=np.asarray(per_replica, dtype=np.float64),
        per_site=np.asarray(w_cost * cands.model_cost, dtype=np.float64),
        per_source=np.asarray(per_source, dtype=np.float64),
        per_share=np.asarray(per_share, dtype=np.float64),
        source_weight=weights,
    )


def breakdown(cands: Candidates, alloc: Allocation) -> CostBreakdown:
    """Money per month of one allocation, term by term (no weights: what the fleet pays)."""
    c, n = alloc.candidate, alloc.replicas
    rates = cands.rates
    shares = np.array(alloc.shares, dtype=np.float64)
    egress = (
        float(np.sum(shares * np.where(shares > 0, cands.egress[:, c], 0.0)))
        if shares.size
        else 0.0
    )
    energy = n * rates.energy_idle[c]
    if cands.view.is_job:
        energy += n * rates.energy_busy[c]
    if shares.size:
        energy += float(
            np.sum(
                shares
                * (
                    _requests(cands) * rates.energy_request[c]
                    + _busy(cands)[:, c] * rates.energy_busy[c]
                )
            )
        )
    return CostBreakdown(
        compute=float(n * rates.compute[c]),
        egress=egress,
        model_distribution=float(cands.model_cost[c]),
        energy=float(energy),
        preference_penalty=float(alloc.weight * cands.penalty[c]),
    )


def breakdowns(cands: Candidates, allocs: Sequence[Allocation]) -> list[CostBreakdown]:
    """:func:`breakdown` of each allocation of a workload, to the last bit, in plain floats.

    The same operations in the same order on the same values (each source's
    terms, then numpy's pairwise sum of them), without a dozen numpy calls on
    arrays of a few sources per allocation: a plan explains every allocation.
    """
    view = cands.view
    if not view.sources:
        return [breakdown(cands, a) for a in allocs]
    rates = cands.rates
    requests = [s.monthly_requests for s in view.sources]
    avg = [s.rate * s.mean_factor for s in view.sources]
    out = []
    for alloc in allocs:
        c, n = alloc.candidate, alloc.replicas
        shares = [float(f) for f in alloc.shares]
        column = cands.egress[:, c].tolist()
        egress = _pairwise_sum(
            [f * (x if f > 0 else 0.0) for f, x in zip(shares, column, strict=True)], 0, len(shares)
        )
        idle, busy_rate = float(rates.energy_idle[c]), float(rates.energy_busy[c])
        energy = n * idle
        if view.is_job:
            energy += n * busy_rate
            busy = [0.0] * len(avg)
        else:
            svc, concurrency = float(cands.svc_mean[c]), int(cands.concurrency[c])
            busy = [a * svc / concurrency for a in avg]
        per_request = float(rates.energy_request[c])
        terms = [
            f * (r * per_request + b * busy_rate)
            for f, r, b in zip(shares, requests, busy, strict=True)
        ]
        energy += _pairwise_sum(terms, 0, len(terms))
        out.append(
            CostBreakdown(
                compute=float(n * rates.compute[c]),
                egress=egress,
                model_distribution=float(cands.model_cost[c]),
                energy=float(energy),
                preference_penalty=float(alloc.weight * cands.penalty[c]),
            )
        )
    return out
