"""Closed-form queueing: how long a request waits for a free replica.

The placement engine predicts the wait at a site with ``c`` replicas, Poisson arrivals
at rate ``lam`` (requests/s) and a service time with mean ``1/mu`` and CV ``cs``:

* M/M/c is exact: a request waits with probability C (Erlang C) and, if it waits, the
  wait is exponential with rate ``c*mu - lam``.
* M/G/c has no closed form. We use the Allen–Cunneen approximation for the mean,
  ``E[W] ≈ C · (1 + cs²)/2 / (c*mu - lam)`` (exact for M/M/c, and for M/G/1 where it
  is Pollaczek–Khinchine; the simulator measures the real wait), and keep the M/M/c
  *shape*: W is 0 with
  probability 1 - C and otherwise exponential with mean ``theta`` chosen so that the
  mean matches Allen–Cunneen, i.e. ``theta = (1 + cs²)/2 / (c*mu - lam)``. That
  :class:`WaitDist` is what ``endtoend.py`` convolves with the network and service.

Unstable systems (utilisation >= 1) have an infinite wait: every function returns
``math.inf`` (or ``inf`` entries) for them, never NaN or a negative number. Functions
ending in ``_many`` take broadcastable arrays; the others take and return floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fleetplane.latency.distributions import FloatArray, ServiceTime, check_probabilities

IntArray = npt.NDArray[np.int64]


def _check_rates(lam: float, mu: float, c: int) -> None:
    if not (math.isfinite(lam) and lam >= 0.0):
        raise ValueError(f"arrival rate must be finite and >= 0 requests/s, got {lam}")
    if not (math.isfinite(mu) and mu > 0.0):
        raise ValueError(f"service rate must be positive and finite, got {mu}")
    if c < 1:
        raise ValueError(f"number of servers must be >= 1, got {c}")


def _check_q(q: float) -> None:
    if not 0.0 <= q < 1.0:
        raise ValueError(f"quantile level must be in [0, 1), got {q}")


def erlang_b(c: int, a: float) -> float:
    """Erlang B blocking probability for ``c`` servers and offered load ``a``.

    Uses the recursion ``B(k) = a B(k-1) / (k + a B(k-1))`` which stays in [0, 1] and is
    stable for any ``c`` (factorial formulas overflow beyond c ≈ 170).
    """
    if c < 0 or not (math.isfinite(a) and a >= 0.0):
        raise ValueError(f"need c >= 0 and finite load a >= 0, got c={c}, a={a}")
    b = 1.0
    for k in range(1, c + 1):
        b = a * b / (k + a * b)
    return b


def _c_from_b(c: float | FloatArray, a: float | FloatArray, b: float | FloatArray) -> FloatArray:
    """Erlang C from Erlang B: ``C = c B / (c - a (1 - B))``; 1 when ``a >= c``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        erl_c = c * np.asarray(b) / (c - np.asarray(a) * (1.0 - np.asarray(b)))
    return np.asarray(np.where(np.asarray(a) < c, np.clip(erl_c, 0.0, 1.0), 1.0), np.float64)


def erlang_c(c: int, a: float) -> float:
    """Probability that an arrival waits in M/M/c with offered load ``a = lam/mu``.

    Returns 1.0 for ``a >= c`` (the queue grows without bound).
    """
    if c < 1:
        raise ValueError(f"number of servers must be >= 1, got {c}")
    return float(_c_from_b(float(c), a, erlang_b(c, a)))


def erlang_c_many(c: npt.ArrayLike, a: npt.ArrayLike) -> FloatArray:
    """Vectorised :func:`erlang_c` over broadcastable arrays of ``c`` and ``a``.

    Runs the Erlang-B recursion once up to ``max(c)``, freezing each element when its
    own ``c`` is reached, so the cost is ``O(max(c) · size)``.
    """
    ca, aa = np.broadcast_arrays(np.asarray(c, dtype=np.int64), np.asarray(a, dtype=np.float64))
    if ca.size and (ca.min() < 1 or not np.all(np.isfinite(aa) & (aa >= 0.0))):
        raise ValueError("need every c >= 1 and every load a finite and >= 0")
    b = np.ones(ca.shape)
    for k in range(1, int(ca.max(initial=0)) + 1):
        b = np.where(k <= ca, aa * b / (k + aa * b), b)
    return _c_from_b(ca.astype(np.float64), aa, b)


@dataclass(frozen=True)
class WaitDist:
    """Queueing wait: 0 with probability ``1 - p_wait``, else exponential with mean ``theta``.

    ``theta == inf`` (with ``p_wait == 1``) is an unstable queue.
    """

    p_wait: float
    theta: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.p_wait <= 1.0:
            raise ValueError(f"p_wait must be a probability, got {self.p_wait}")
        if not self.theta > 0.0:
            raise ValueError(f"theta (mean wait when waiting) must be > 0 s, got {self.theta}")

    @property
    def mean(self) -> float:
        return self.p_wait * self.theta if self.p_wait > 0.0 else 0.0

    def quantile(self, q: float) -> float:
        """Smallest t with P(W <= t) >= q."""
        _check_q(q)
        if q <= 1.0 - self.p_wait:
            return 0.0
        return self.theta * math.log(self.p_wait / (1.0 - q))

    def cdf(self, t: float) -> float:
        """P(W <= t)."""
        if t < 0.0:
            return 0.0
        return 1.0 - self.p_wait * math.exp(-t / self.theta)

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        """``n`` independent draws."""
        waits = rng.random(n) < self.p_wait
        return np.where(waits, rng.exponential(min(self.theta, 1e300), n), 0.0)


def mmc_wait(lam: float, mu: float, c: int) -> WaitDist:
    """The exact M/M/c waiting-time distribution."""
    _check_rates(lam, mu, c)
    if lam >= c * mu:
        return WaitDist(1.0, math.inf)
    return WaitDist(erlang_c(c, lam / mu), 1.0 / (c * mu - lam))


def mmc_mean_wait(lam: float, mu: float, c: int) -> float:
    """E[W] in M/M/c: ``C / (c mu - lam)``; inf when unstable."""
    return mmc_wait(lam, mu, c).mean


def mmc_wait_quantile(lam: float, mu: float, c: int, q: float) -> float:
    """Exact q-quantile of the M/M/c wait (0 when ``q <= 1 - C``); inf when unstable."""
    return mmc_wait(lam, mu, c).quantile(q)


def mm1_mean_wait(lam: float, mu: float) -> float:
    """E[W] in M/M/1: ``rho / (mu - lam)``."""
    return mmc_mean_wait(lam, mu, 1)


def mm1_wait_quantile(lam: float, mu: float, q: float) -> float:
    """Exact q-quantile of the M/M/1 wait."""
    return mmc_wait_quantile(lam, mu, 1, q)


def mg1_mean_wait(lam: float, service: ServiceTime) -> float:
    """Pollaczek–Khinchine: ``E[W] = lam E[S²] / (2 (1 - rho))``; inf when unstable."""
    _check_rates(lam, service.rate, 1)
    rho = lam * service.mean
    if rho >= 1.0:
        return math.inf
    return lam * service.second_moment() / (2.0 * (1.0 - rho))


def md1_mean_wait(lam: float, service_time: float) -> float:
    """M/D/1 mean wait (Pollaczek–Khinchine with CV 0): ``rho D / (2 (1 - rho))``."""
    return mg1_mean_wait(lam, ServiceTime(service_time, 0.0))


def mgc_wait(lam: float, service: ServiceTime, c: int) -> WaitDist:
    """Approximate M/G/c wait: Erlang-C atom plus exponential tail (see module docstring)."""
    _check_rates(lam, service.rate, c)
    slack = c * service.rate - lam
    if slack <= 0.0:
        return WaitDist(1.0, math.inf)
    p_wait = erlang_c(c, lam * service.mean)
    return WaitDist(p_wait, 0.5 * (1.0 + service.scv) / slack)


def mgc_mean_wait(lam: float, service: ServiceTime, c: int) -> float:
    """Allen–Cunneen mean wait in M/G/c: Erlang-C wait × (1 + cs²)/2; inf when unstable."""
    return mgc_wait(lam, service, c).mean


def mgc_wait_quantile(lam: float, service: ServiceTime, c: int, q: float) -> float:
    """q-quantile of the approximate M/G/c wait: solves ``C exp(-t/theta) = 1 - q``."""
    return mgc_wait(lam, service, c).quantile(q)


def mgc_wait_many(
    lam: npt.ArrayLike, svc_mean: npt.ArrayLike, svc_cv: npt.ArrayLike, c: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Vectorised :func:`mgc_wait`: arrays ``(p_wait, theta)`` (``1, inf`` if unstable)."""
    la, ma, cva, ca = np.broadcast_arrays(
        np.asarray(lam, np.float64), np.asarray(svc_mean, np.float64),
        np.asarray(svc_cv, np.float64), np.asarray(c, np.int64),
    )
    if not (np.all(la >= 0.0) and np.all(ma > 0.0) and np.all(cva >= 0.0)):
        raise ValueError("need lam >= 0, svc_mean > 0 and svc_cv >= 0 everywhere")
    slack = ca / ma - la
    stable = slack > 0.0
    p_wait = np.where(stable, erlang_c_many(ca, np.where(stable, la * ma, 0.0)), 1.0)
    with np.errstate(divide="ignore"):
        theta = np.where(stable, 0.5 * (1.0 + cva * cva) / np.where(stable, slack, 1.0), np.inf)
    return p_wait, theta


def min_servers(
    lam: float, service: ServiceTime, target_wait_quantile: float, q: float, c_max: int
) -> int | None:
    """Smallest ``c <= c_max`` whose approximate M/G/c wait q-quantile is <= the target.

    The wait quantile falls as ``c`` grows (Erlang C falls and the drain rate grows),
    so one Erlang-B recursion up to ``c_max`` finds the first ``c`` that qualifies.
    Returns None when even ``c_max`` replicas are not enough.
    """
    found = min_servers_many(lam, service.mean, service.cv, target_wait_quantile, q, c_max)
    return int(found) if found > 0 else None


def min_servers_many(
    lam: npt.ArrayLike,
    svc_mean: npt.ArrayLike,
    svc_cv: npt.ArrayLike,
    target_wait_quantile: npt.ArrayLike,
    q: npt.ArrayLike,
    c_max: int,
) -> IntArray:
    """Vectorised :func:`min_servers`; 0 marks "not reachable within ``c_max``"."""
    la, ma, cva, target, qa = np.broadcast_arrays(
        np.asarray(lam, np.float64), np.asarray(svc_mean, np.float64),
        np.asarray(svc_cv, np.float64), np.asarray(target_wait_quantile, np.float64),
        check_probabilities(q),
    )
    if not (np.all(la >= 0.0) and np.all(ma > 0.0) and np.all(cva >= 0.0) and np.all(qa < 1.0)):
        raise ValueError("need lam >= 0, svc_mean > 0, svc_cv >= 0 and q < 1 everywhere")
    load = la * ma
    found = np.zeros(la.shape, dtype=np.int64)
    b = np.ones(la.shape)
    for k in range(1, c_max + 1):
        b = load * b / (k + load * b)
        ok = (found == 0) & (load < k) & _wait_quantile_ok(k, load, b, la, ma, cva, target, qa)
        found[ok] = k
        if np.all(found > 0):
            break
    return found


def _wait_quantile_ok(
    k: int, load: FloatArray, b: FloatArray, lam: FloatArray, mean: FloatArray,
    cv: FloatArray, target: FloatArray, q: FloatArray,
) -> npt.NDArray[np.bool_]:
    """Whether ``k`` servers meet the wait-quantile target (stable elements only)."""
    p_wait = _c_from_b(float(k), load, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        theta = 0.5 * (1.0 + cv * cv) / (k / mean - lam)
        wq = np.where(q <= 1.0 - p_wait, 0.0, theta * np.log(p_wait / (1.0 - q)))
    return np.asarray(wq <= target)
