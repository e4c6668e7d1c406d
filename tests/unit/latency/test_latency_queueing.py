"""Erlang B/C and M/M/c, M/G/1, M/G/c waiting times against tables and simulation."""

from __future__ import annotations

import heapq
import math

import numpy as np
import pytest
from scipy import special

from fleetplane.latency.distributions import ServiceTime
from fleetplane.latency.queueing import (
    WaitDist,
    erlang_b,
    erlang_c,
    erlang_c_many,
    md1_mean_wait,
    mg1_mean_wait,
    mgc_mean_wait,
    mgc_wait,
    mgc_wait_many,
    mgc_wait_quantile,
    min_servers,
    min_servers_many,
    mm1_mean_wait,
    mm1_wait_quantile,
    mmc_mean_wait,
    mmc_wait,
    mmc_wait_quantile,
)


def _erlang_c_direct(c: int, a: float) -> float:
    """Erlang C from its defining sum, in log space (independent of the recursion)."""
    k = np.arange(c)
    log_terms = k * math.log(a) - special.gammaln(k + 1)
    log_last = c * math.log(a) - special.gammaln(c + 1) + math.log(c / (c - a))
    top = special.logsumexp(np.append(log_terms, log_last))
    return math.exp(log_last - top)


@pytest.mark.parametrize(
    ("c", "a", "expected"),
    [(2, 1.0, 1.0 / 3.0), (10, 8.0, 0.4092), (1, 0.7, 0.7), (5, 2.0, 0.0597)],
)
def test_erlang_c_table_values(c: int, a: float, expected: float) -> None:
    assert erlang_c(c, a) == pytest.approx(expected, abs=5e-4)


@pytest.mark.parametrize(("c", "a"), [(50, 45.0), (300, 290.0), (1000, 950.0), (1000, 10.0)])
def test_erlang_c_is_stable_for_many_servers(c: int, a: float) -> None:
    value = erlang_c(c, a)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(_erlang_c_direct(c, a), rel=1e-9, abs=1e-300)


def test_erlang_b_known_value() -> None:
    assert erlang_b(2, 1.0) == pytest.approx(0.2)
    assert erlang_b(0, 3.0) == 1.0


def test_erlang_c_many_matches_scalar_and_broadcasts() -> None:
    c = np.array([[1], [2], [10], [200]])
    a = np.array([0.5, 0.9, 7.5, 150.0])
    many = erlang_c_many(c, a)
    assert many.shape == (4, 4)
    for i in range(4):
        for j in range(4):
            assert many[i, j] == pytest.approx(erlang_c(int(c[i, 0]), float(a[j])), rel=1e-12)


def test_unstable_queues_wait_forever() -> None:
    service = ServiceTime(0.1, 0.5)
    assert erlang_c(2, 2.0) == 1.0
    assert erlang_c(2, 3.5) == 1.0
    assert mmc_mean_wait(20.0, 10.0, 2) == math.inf
    assert mmc_wait_quantile(20.0, 10.0, 2, 0.5) == math.inf
    assert mm1_mean_wait(12.0, 10.0) == math.inf
    assert mg1_mean_wait(10.0, service) == math.inf
    assert md1_mean_wait(10.0, 0.1) == math.inf
    assert mgc_mean_wait(25.0, service, 2) == math.inf
    assert mgc_wait_quantile(25.0, service, 2, 0.99) == math.inf
    p_wait, theta = mgc_wait_many([5.0, 25.0], 0.1, 0.5, 2)
    assert p_wait[1] == 1.0 and theta[1] == math.inf
    assert np.all(np.isfinite(p_wait)) and theta[0] > 0.0


def test_single_server_closed_forms() -> None:
    lam, mu = 8.0, 10.0
    assert mm1_mean_wait(lam, mu) == pytest.approx(0.8 / 2.0)
    assert md1_mean_wait(lam, 1.0 / mu) == pytest.approx(mm1_mean_wait(lam, mu) / 2.0)
    assert mg1_mean_wait(lam, ServiceTime(0.1, 1.0)) == pytest.approx(mm1_mean_wait(lam, mu))
    # P(W > t) = rho exp(-(mu - lam) t) in M/M/1.
    assert mm1_wait_quantile(lam, mu, 0.99) == pytest.approx(math.log(0.8 / 0.01) / 2.0)
    assert mm1_wait_quantile(lam, mu, 0.1) == 0.0


def test_allen_cunneen_is_exact_for_exponential_service() -> None:
    for c, lam in [(1, 7.0), (3, 25.0), (12, 100.0)]:
        exact = mmc_mean_wait(lam, 10.0, c)
        assert mgc_mean_wait(lam, ServiceTime(0.1, 1.0), c) == pytest.approx(exact)
        approx, exact_wait = mgc_wait(lam, ServiceTime(0.1, 1.0), c), mmc_wait(lam, 10.0, c)
        assert approx.p_wait == pytest.approx(exact_wait.p_wait)
        assert approx.theta == pytest.approx(exact_wait.theta)
    # cs^2 = 0 halves the wait, cs^2 = 3 doubles it.
    base = mgc_mean_wait(25.0, ServiceTime(0.1, 1.0), 3)
    assert mgc_mean_wait(25.0, ServiceTime(0.1, 0.0), 3) == pytest.approx(base / 2.0)
    assert mgc_mean_wait(25.0, ServiceTime(0.1, math.sqrt(3.0)), 3) == pytest.approx(2.0 * base)


def test_mgc_wait_shape_matches_its_mean() -> None:
    wait = mgc_wait(25.0, ServiceTime(0.1, 0.6), 3)
    assert wait.mean == pytest.approx(mgc_mean_wait(25.0, ServiceTime(0.1, 0.6), 3))
    q = 0.95
    t = mgc_wait_quantile(25.0, ServiceTime(0.1, 0.6), 3, q)
    assert wait.cdf(t) == pytest.approx(q)
    assert wait.quantile(1.0 - wait.p_wait) == 0.0


def _simulate_mmc_waits(lam: float, mu: float, c: int, n: int, seed: int) -> np.ndarray:
    """FCFS M/M/c by event list: each arrival takes the server that frees first."""
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1.0 / lam, n))
    services = rng.exponential(1.0 / mu, n)
    free = [0.0] * c
    waits = np.empty(n)
    for i in range(n):
        start = max(arrivals[i], heapq.heappop(free))
        waits[i] = start - arrivals[i]
        heapq.heappush(free, start + services[i])
    return waits[n // 10 :]


def test_mmc_wait_quantiles_match_simulation() -> None:
    lam, mu, c = 24.0, 10.0, 3
    waits = _simulate_mmc_waits(lam, mu, c, 300_000, seed=11)
    exact = mmc_wait(lam, mu, c)
    assert np.mean(waits > 0.0) == pytest.approx(exact.p_wait, abs=0.01)
    assert waits.mean() == pytest.approx(exact.mean, rel=0.05)
    for q in (0.8, 0.9, 0.99):
        assert np.quantile(waits, q) == pytest.approx(mmc_wait_quantile(lam, mu, c, q), rel=0.05)


def test_min_servers_is_the_smallest_sufficient_count() -> None:
    service = ServiceTime(0.05, 0.8)
    lam, target, q = 300.0, 0.01, 0.99
    c = min_servers(lam, service, target, q, c_max=100)
    assert c is not None
    assert mgc_wait_quantile(lam, service, c, q) <= target
    assert mgc_wait_quantile(lam, service, c - 1, q) > target
    assert min_servers(lam, service, target, q, c_max=c - 1) is None
    assert min_servers(0.0, service, 0.0, 0.5, c_max=3) == 1


def test_min_servers_many_matches_scalar() -> None:
    lam = np.array([10.0, 100.0, 1000.0, 50.0])
    mean = np.array([0.05, 0.02, 0.01, 0.2])
    cv = np.array([1.0, 0.5, 1.5, 0.0])
    found = min_servers_many(lam, mean, cv, 0.005, 0.95, c_max=40)
    for i in range(4):
        scalar = min_servers(float(lam[i]), ServiceTime(mean[i], cv[i]), 0.005, 0.95, 40)
        assert found[i] == (0 if scalar is None else scalar)


def test_bad_queue_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="arrival rate"):
        mmc_wait(-1.0, 1.0, 1)
    with pytest.raises(ValueError, match="servers"):
        mmc_wait(1.0, 1.0, 0)
    with pytest.raises(ValueError, match="quantile level"):
        mmc_wait_quantile(1.0, 2.0, 1, 1.0)
    with pytest.raises(ValueError, match="p_wait"):
        WaitDist(1.5, 1.0)
    with pytest.raises(ValueError):
        erlang_c_many([0, 1], [1.0, 1.0])
