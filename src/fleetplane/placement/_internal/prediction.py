"""Latency math for the engine, on top of ``fleetplane.latency`` (the simulator's code too).

The exact end-to-end quantile (``end_to_end_quantile_many``) is a root find
over a quadrature: accurate, but with a fixed cost per call. The engine
therefore uses it in large batches, and uses cheap *bounds* to avoid it:

* lower bound — the latency is at least storage plus any single random part,
  so its q-quantile is at least storage + max(Q_q(RTT), Q_q(service));
* upper bound — by the union bound, P(T > storage + Σ_i Q_{1-m_i}(part_i)) ≤ Σ_i m_i,
  with the allowed miss 1 - q shared out between the parts (and a lossy
  path's retransmission probability counted as a miss of its own).

A candidate whose lower bound misses the target is infeasible and one whose
upper bound meets it is feasible, without the exact computation; only the
band in between is computed exactly. Replica counts use the same union bound
split between "everything but the wait" and the wait (``conservative_servers``):
never fewer replicas than needed, and ``exact_servers`` trims the surplus
for the allocations a solver actually chose.
"""

from __future__ import annotations

import functools
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from scipy import special

from fleetplane.latency.distributions import (
    LogNormal,
    check_probabilities,
    lognormal_from_moments,
    lognormal_quantile,
)
from fleetplane.latency.endtoend import mixture_quantile_many
from fleetplane.latency.network import loss_retransmit
from fleetplane.latency.queueing import mgc_wait_many
from fleetplane.placement._internal.fleet_index import BoolArray, FloatArray, IntArray

# How many exact quantile evaluations (fleetplane.latency's vectorised
# end-to-end quantiles, ~0.1 ms each on this machine) a stage may spend. Up to
# it, decisions the bounds cannot make are made exactly; beyond it (large
# fleets) the bounds decide and exact evaluation is kept for what has no
# other answer. Every decision stays proven safe either way.
EXACT_BUDGET = 20_000


@dataclass(frozen=True)
class Parts:
    """Flat arrays describing one request path each: round trip, loss, storage, service."""

    rtt_mu: FloatArray
    rtt_sigma: FloatArray
    loss: FloatArray
    storage: FloatArray
    svc_mean: FloatArray
    svc_cv: FloatArray

    def take(self, idx: IntArray) -> Parts:
        return Parts(*(getattr(self, f)[idx] for f in Parts.__dataclass_fields__))

    @staticmethod
    def concat(parts: Sequence[Parts]) -> Parts:
        return Parts(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in Parts.__dataclass_fields__)
        )

    @property
    def size(self) -> int:
        return int(self.rtt_mu.size)


# Below this many elements, run-length compression costs more than it saves.
_RUNS_FROM = 256


def _run_starts(*columns: FloatArray) -> IntArray | None:
    """Starts of the runs of equal rows in ``columns`` when they compress well, else None.

    The engine's flat arrays are built block by block (one workload profile
    and target after another), so the service parameters and levels come in
    long runs: transcendental functions then only need one value per run.
    """
    n = columns[0].size
    if n < _RUNS_FROM:
        return None
    change = np.zeros(n, dtype=bool)
    change[0] = True
    for column in columns:
        change[1:] |= column[1:] != column[:-1]
    starts = np.flatnonzero(change)
    return starts if starts.size * 4 <= n else None


def _expand(values: FloatArray, starts: IntArray, n: int) -> FloatArray:
    return np.repeat(values, np.diff(np.r_[starts, n]))


def _service_quantile(qa: FloatArray, mean: FloatArray, cv: FloatArray) -> FloatArray:
    mu, sigma = lognormal_from_moments(mean, (cv * mean) ** 2)
    ln = lognormal_quantile(qa, mu, sigma)
    with np.errstate(divide="ignore"):
        expo = -mean * np.log1p(-qa)
    return np.asarray(np.where(cv == 0.0, mean, np.where(cv == 1.0, expo, ln)), dtype=np.float64)


def service_quantile(q: FloatArray | float, mean: FloatArray, cv: FloatArray) -> FloatArray:
    """Quantiles of 'auto' service times (CV 0 constant, 1 exponential, else lognormal)."""
    qa = np.ascontiguousarray(np.broadcast_to(np.asarray(q, dtype=np.float64), mean.shape))
    if mean.ndim == 1:
        starts = _run_starts(qa, mean, cv)
        if starts is not None:
            values = _service_quantile(qa[starts], mean[starts], cv[starts])
            return _expand(values, starts, mean.size)
    return _service_quantile(qa, mean, cv)


def rtt_quantile(q: FloatArray | float, parts: Parts) -> FloatArray:
    """Round-trip quantiles; 0 for a local request, inf when unreachable."""
    qa = np.asarray(q, dtype=np.float64)
    starts = _run_starts(qa) if qa.ndim == 1 and qa.size == parts.size else None
    with np.errstate(over="ignore", invalid="ignore"):
        if starts is not None:
            # The level's normal quantile once per run; the lognormal's per element.
            z = _expand(special.ndtri(check_probabilities(qa[starts])), starts, qa.size)
            smooth = np.exp(parts.rtt_mu + parts.rtt_sigma * z)
            out = np.where(parts.rtt_sigma > 0.0, smooth, np.exp(parts.rtt_mu))
        else:
            out = lognormal_quantile(qa, parts.rtt_mu, parts.rtt_sigma)
    out = np.where(np.isneginf(parts.rtt_mu), 0.0, out)
    return np.asarray(np.where(np.isposinf(parts.rtt_mu), np.inf, out), dtype=np.float64)


def _miss_left(q: FloatArray, parts: Parts) -> FloatArray:
    """What is left of the allowed miss ``1 - q`` once retransmissions take theirs.

    A request is retransmitted with probability ``loss``; the union bound
    charges that whole probability as a miss, and the rest of ``1 - q`` is
    shared by the other parts. Nothing left (≤ 0): the bound cannot decide.
    """
    return np.asarray((1.0 - q) - np.where(parts.loss > 0.0, parts.loss, 0.0), dtype=np.float64)


def no_wait_bounds(q: FloatArray, parts: Parts) -> tuple[FloatArray, FloatArray]:
    """Lower and upper bounds on the q-quantile of round trip + storage + service.

    Lower: the latency exceeds storage + a + b whenever the round trip exceeds
    ``a`` *and* the service exceeds ``b``; independent, that happens with
    probability ``P(RTT > a)·P(S > b)``, so with both at level ``1 - √(1-q)``
    (probability ``1 - q``, a hair more) the q-quantile is above their sum.
    A single part alone at level q is the other lower bound; the larger wins.
    Upper: the union bound over retransmission, round trip and service (the
    latter two at level ``1 - m/2`` with ``m`` the miss left by retransmission).
    """
    single = np.maximum(rtt_quantile(q, parts), service_quantile(q, parts.svc_mean, parts.svc_cv))
    joint_level = np.clip(1.0 - np.sqrt(1.0 - q) * (1.0 + 1e-9), 0.0, 1.0)
    joint = rtt_quantile(joint_level, parts) + service_quantile(
        joint_level, parts.svc_mean, parts.svc_cv
    )
    lower = parts.storage + np.maximum(single, joint)
    miss = _miss_left(q, parts)
    level = np.clip(1.0 - miss / 2.0, 0.0, 1.0 - 1e-15)
    upper = (
        parts.storage
        + rtt_quantile(level, parts)
        + service_quantile(level, parts.svc_mean, parts.svc_cv)
    )
    return lower, np.where(miss > 0.0, upper, np.inf)


@functools.lru_cache(maxsize=1 << 16)
def _retransmit(
    mu: float, sigma: float, loss: float
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    found = loss_retransmit(LogNormal(mu, sigma), min(loss, 0.999))
    return found.weights, found.delays


def _loss_components(parts: Parts) -> tuple[FloatArray, FloatArray]:
    """Per element: retransmission-delay mixture weights and delays (padded with zero weight)."""
    n = parts.size
    lossy = np.flatnonzero(parts.loss > 0.0)
    if not lossy.size:
        return np.ones((n, 1)), np.zeros((n, 1))
    found = [
        _retransmit(float(parts.rtt_mu[i]), float(parts.rtt_sigma[i]), float(parts.loss[i]))
        for i in lossy.tolist()
    ]
    width = max(len(w) for w, _ in found)
    weights = np.zeros((n, width))
    offsets = np.zeros((n, width))
    weights[:, 0] = 1.0
    for i, (w, d) in zip(lossy.tolist(), found, strict=True):
        weights[i, 0] = 0.0
        weights[i, : len(w)] = w
        offsets[i, : len(d)] = d
    return weights, offsets


def quantiles(
    q: FloatArray,
    parts: Parts,
    wait_c: FloatArray | None = None,
    wait_theta: FloatArray | None = None,
) -> FloatArray:
    """Exact end-to-end q-quantiles per element (one batched call into fleetplane.latency)."""
    if parts.size == 0:
        return np.zeros(0)
    def full(values: FloatArray | float) -> FloatArray:
        return np.broadcast_to(np.asarray(values, dtype=np.float64), (parts.size,))

    levels = full(q)
    c = full(0.0 if wait_c is None else wait_c)
    theta = full(1.0 if wait_theta is None else wait_theta)
    distinct, again = _distinct_paths(levels, parts, c, theta)
    if distinct is None or again is None:
        return _exact(levels, parts, c, theta)
    # Each path's quantile is a function of its own inputs alone (the library solves
    # every row on its own), so equal inputs are solved once: a third of them in a plan.
    found = _exact(levels[distinct], parts.take(distinct), c[distinct], theta[distinct])
    return np.asarray(found[again], dtype=np.float64)


def _exact(q: FloatArray, parts: Parts, c: FloatArray, theta: FloatArray) -> FloatArray:
    weights, offsets = _loss_components(parts)
    # Unreachable paths and unstable queues are answered here: the library
    # returns inf for them too, and keeping them out avoids its arithmetic on
    # infinities.
    reachable = (np.isfinite(parts.rtt_mu) | np.isneginf(parts.rtt_mu)) & np.isfinite(theta)
    out = np.full(parts.size, np.inf)
    idx = np.flatnonzero(reachable)
    if idx.size:

        def col(a: FloatArray) -> FloatArray:
            return np.asarray(a, dtype=np.float64)[idx, None]

        out[idx] = mixture_quantile_many(
            q[idx],
            weights[idx],
            col(parts.rtt_mu),
            col(parts.rtt_sigma),
            col(parts.storage) + offsets[idx],
            col(c),
            col(theta),
            col(parts.svc_mean),
            col(parts.svc_cv),
        )
    return out


def _distinct_paths(
    q: FloatArray, parts: Parts, c: FloatArray, theta: FloatArray
) -> tuple[IntArray | None, IntArray | None]:
    """First occurrences of the distinct (level, path, wait) inputs and where each element's is.

    (None, None) when every element is distinct. Inputs are compared bit for bit
    (0.0 and -0.0 differ), so an element and its representative are the same input.
    """
    fields = [np.asarray(getattr(parts, f), dtype=np.float64) for f in Parts.__dataclass_fields__]
    bits = np.ascontiguousarray(np.column_stack([q, *fields, c, theta])).view(np.uint64)
    _, first, again = np.unique(bits, axis=0, return_index=True, return_inverse=True)
    if first.size == parts.size:
        return None, None
    return first, again.reshape(-1)


@dataclass(frozen=True)
class QuantileAsk:
    """Exact quantiles a computation waits for: the q-quantile ``levels[i]`` of path ``i``."""

    levels: FloatArray
    parts: Parts


T = TypeVar("T")
# A computation that asks for exact quantiles as it goes (``values = yield ask``), so
# that many of them can be answered together (answer_together): the exact computation's
# fixed cost is per call, and explaining a workload asks for a handful of values at a time.
Asking = Generator[QuantileAsk, FloatArray, T]


def answer(asking: Asking[T]) -> T:
    """Run one asking computation to its result."""
    return answer_together([asking])[0]


def answer_together(askings: Sequence[Asking[T]]) -> list[T]:
    """Run asking computations side by side, all the asks of a round in one ``quantiles`` call.

    A path's quantile does not depend on the others computed with it, so the
    values are those each computation would get alone.
    """
    results: dict[int, T] = {}
    waiting: dict[int, QuantileAsk] = {}

    def advance(i: int, values: FloatArray | None) -> None:
        try:
            waiting[i] = askings[i].send(values)  # type: ignore[arg-type]
        except StopIteration as done:
            results[i] = done.value

    for i in range(len(askings)):
        advance(i, None)
    while waiting:
        asks = list(waiting.items())
        waiting.clear()
        values = quantiles(
            np.concatenate([ask.levels for _, ask in asks]),
            Parts.concat([ask.parts for _, ask in asks]),
        )
        start = 0
        for i, ask in asks:
            advance(i, values[start : start + ask.parts.size])
            start += ask.parts.size
    return [results[i] for i in range(len(askings))]


def wait_params(lam: FloatArray, servers: IntArray, parts: Parts) -> tuple[FloatArray, FloatArray]:
    """Erlang-C atom and exponential mean of the M/G/c wait (Allen–Cunneen), per element."""
    c, theta = mgc_wait_many(lam, parts.svc_mean, parts.svc_cv, np.maximum(servers, 1))
    return np.asarray(c, dtype=np.float64), np.asarray(theta, dtype=np.float64)


def stable_servers(lam: FloatArray, svc_mean: FloatArray) -> IntArray:
    """Fewest servers with utilisation below one."""
    return np.asarray(np.floor(lam * svc_mean).astype(np.int64) + 1, dtype=np.int64)


def _wait_budget(q: FloatArray, target: FloatArray, parts: Parts) -> tuple[FloatArray, FloatArray]:
    """What the union bound leaves the wait: a time budget and the probability it may exceed it.

    Retransmission takes its probability of the allowed miss ``1 - q``; of what
    is left (``m``) round trip and service take a quarter each and the wait
    half. A non-positive budget or miss means the bound cannot decide.
    """
    miss = _miss_left(q, parts)
    level = np.clip(1.0 - miss / 4.0, 0.0, 1.0 - 1e-15)
    base = (
        parts.storage
        + rtt_quantile(level, parts)
        + service_quantile(level, parts.svc_mean, parts.svc_cv)
    )
    budget = np.where(miss > 0.0, target - base, -np.inf)
    return np.asarray(budget, dtype=np.float64), np.asarray(miss / 2.0, dtype=np.float64)


def conservative_servers(
    lam: FloatArray, q: FloatArray, target: FloatArray, parts: Parts, c_max: IntArray
) -> IntArray:
    """Servers that certainly meet the target (0: the bound cannot show any count does).

    The wait is fleetplane.latency's M/G/c model, ``P(W > t) = C·exp(-t/θ)``
    with ``θ = (1 + cv²) / (2 (c/S - λ))``. Taking the Erlang-C factor ``C`` as
    1 (every request waits) makes ``P(W > budget) ≤ allowed`` linear in ``c``::

        c ≥ S · (λ + (1 + cv²) · ln(1/allowed) / (2 · budget))

    which needs no Erlang-B recursion over every server count, so it stays
    cheap for millions of candidates. It may overestimate by a server or two
    where ``C`` is small; :func:`tighten` takes those back.
    """
    budget, allowed = _wait_budget(q, target, parts)
    ok = (budget > 0.0) & np.isfinite(budget) & (allowed > 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        drain = (
            (1.0 + parts.svc_cv**2)
            * np.log(1.0 / np.where(ok, allowed, 0.5))
            / (2.0 * np.where(ok, budget, 1.0))
        )
        servers = np.ceil(parts.svc_mean * (lam + drain) * (1.0 - 1e-12))
    servers = np.where(ok & np.isfinite(servers), np.maximum(servers, 1.0), 0.0)
    found = servers.astype(np.int64)
    return np.asarray(np.where(found > c_max, 0, found), dtype=np.int64)


# Above this many servers the Erlang-C factor is not computed (its recursion
# costs one pass per server) and taken as 1 instead, which keeps the bound
# valid; with that many servers the factor is small and a server or two of
# slack does not matter.
ERLANG_SERVERS = 64


def bound_holds(
    lam: FloatArray, servers: IntArray, q: FloatArray, target: FloatArray, parts: Parts
) -> BoolArray:
    """The union bound with the Erlang-C factor proves the target is met.

    A True here is a proof under the model (the exact quantile is at most the
    target); a False means only that the bound cannot tell.
    """
    budget, allowed = _wait_budget(q, target, parts)
    servers = np.maximum(servers, 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        drain = servers / parts.svc_mean - lam
        theta = np.where(drain > 0.0, (1.0 + parts.svc_cv**2) / (2.0 * drain), np.inf)
    c = np.ones(lam.size)
    small = np.flatnonzero((servers <= ERLANG_SERVERS) & (drain > 0.0))
    if small.size:
        c[small], theta[small] = wait_params(lam[small], servers[small], parts.take(small))
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        tail = c * np.exp(-np.maximum(budget, 0.0) / theta)
    return np.asarray((budget > 0.0) & np.isfinite(theta) & (tail <= allowed), dtype=bool)


def meets(
    lam: FloatArray, servers: IntArray, q: FloatArray, target: FloatArray, parts: Parts
) -> BoolArray:
    """Exact check: does the end-to-end q-quantile with this many servers meet the target?"""
    c, theta = wait_params(lam, servers, parts)
    return np.asarray(quantiles(q, parts, c, theta) <= target * (1.0 + 1e-9))
