"""Service-time and lognormal distributions: shapes, percentiles, validation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from fleetplane.latency.distributions import (
    Z99,
    LogNormal,
    ServiceTime,
    lognormal_cdf,
    lognormal_from_moments,
    lognormal_moments,
    lognormal_quantile,
)


@pytest.mark.parametrize(
    ("cv", "kind", "resolved"),
    [
        (0.0, "auto", "deterministic"),
        (1.0, "auto", "exponential"),
        (0.4, "auto", "lognormal"),
        (2.5, "auto", "lognormal"),
        (0.7, "gamma", "gamma"),
        (0.0, "gamma", "deterministic"),
        (0.3, "lognormal", "lognormal"),
    ],
)
def test_service_time_shape_follows_cv(cv: float, kind: str, resolved: str) -> None:
    assert ServiceTime(0.01, cv, kind).resolved_kind == resolved  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("mean", "cv", "kind", "message"),
    [
        (0.0, 0.5, "auto", "mean must be positive"),
        (-1.0, 0.5, "auto", "mean must be positive"),
        (math.inf, 0.5, "auto", "mean must be positive"),
        (0.01, -0.1, "auto", "cv must be finite"),
        (0.01, math.nan, "auto", "cv must be finite"),
        (0.01, 0.5, "deterministic", "deterministic service time has cv 0"),
        (0.01, 0.5, "exponential", "exponential service time has cv 1"),
        (0.01, 0.5, "weibull", "kind must be one of"),
    ],
)
def test_service_time_rejects_bad_parameters(
    mean: float, cv: float, kind: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ServiceTime(mean, cv, kind)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "service",
    [
        ServiceTime(0.02, 0.0),
        ServiceTime(0.02, 1.0),
        ServiceTime(0.02, 0.6),
        ServiceTime(0.02, 1.8),
        ServiceTime(0.02, 0.5, "gamma"),
        ServiceTime(0.02, 1.5, "gamma"),
    ],
)
def test_service_time_moments_quantiles_and_samples_agree(service: ServiceTime) -> None:
    rng = np.random.default_rng(7)
    draws = service.sample(rng, 400_000)
    assert draws.mean() == pytest.approx(service.mean, rel=0.01)
    assert draws.std() == pytest.approx(service.cv * service.mean, rel=0.03, abs=1e-12)
    assert service.second_moment() == pytest.approx(service.mean**2 * (1 + service.scv))
    assert service.scv == pytest.approx(service.cv**2)
    levels = np.array([0.1, 0.5, 0.9, 0.99])
    empirical = np.quantile(draws, levels)
    assert np.allclose(service.quantile(levels), empirical, rtol=0.03)
    if service.cv > 0.0:
        assert np.allclose(service.cdf(service.quantile(levels)), levels, atol=1e-9)


def test_service_time_scalar_in_scalar_out() -> None:
    service = ServiceTime(0.01, 1.0)
    assert isinstance(service.quantile(0.5), float)
    assert isinstance(service.cdf(0.01), float)
    assert service.quantile(0.5) == pytest.approx(0.01 * math.log(2.0))
    assert service.cdf(-1.0) == 0.0
    assert isinstance(service.quantile(np.array([0.5])), np.ndarray)


def test_deterministic_service_is_a_step() -> None:
    service = ServiceTime(0.01, 0.0)
    assert service.cdf(0.00999) == 0.0
    assert service.cdf(0.01) == 1.0
    assert service.quantile(0.999) == 0.01


def test_quantile_levels_are_checked() -> None:
    with pytest.raises(ValueError, match="probabilities"):
        ServiceTime(0.01, 0.5).quantile(1.5)
    with pytest.raises(ValueError, match="probabilities"):
        LogNormal(0.0, 1.0).quantile(np.array([-0.1, 0.5]))


def test_lognormal_from_p50_p99_hits_both_percentiles() -> None:
    link = LogNormal.from_p50_p99(0.020, 0.080)
    assert link.median == pytest.approx(0.020)
    assert link.quantile(0.99) == pytest.approx(0.080)
    assert link.cdf(0.080) == pytest.approx(0.99)
    assert link.sigma == pytest.approx(math.log(4.0) / Z99)


def test_lognormal_equal_percentiles_is_a_constant() -> None:
    link = LogNormal.from_p50_p99(0.005, 0.005)
    assert link.is_constant
    assert link.var == 0.0
    assert link.quantile(0.999) == pytest.approx(0.005)
    assert link.cdf(0.0049) == 0.0
    assert link.cdf(0.005) == 1.0
    assert np.all(link.sample(np.random.default_rng(0), 5) == pytest.approx(0.005))


@pytest.mark.parametrize(("p50", "p99"), [(0.0, 0.1), (-1.0, 0.1), (0.1, 0.05), (0.1, math.inf)])
def test_lognormal_rejects_bad_percentiles(p50: float, p99: float) -> None:
    with pytest.raises(ValueError):
        LogNormal.from_p50_p99(p50, p99)


def test_lognormal_rejects_bad_parameters() -> None:
    for mu, sigma in [(math.nan, 0.1), (math.inf, 0.0), (0.0, -0.1), (-math.inf, 0.5)]:
        with pytest.raises(ValueError):
            LogNormal(mu, sigma)


def test_lognormal_mean_cv_and_moments_are_exact() -> None:
    ln = LogNormal.from_mean_cv(0.03, 0.8)
    assert ln.mean == pytest.approx(0.03)
    assert ln.std == pytest.approx(0.024)
    reference = stats.lognorm(s=ln.sigma, scale=math.exp(ln.mu))
    assert ln.var == pytest.approx(reference.var())
    assert ln.quantile(0.95) == pytest.approx(reference.ppf(0.95))
    again = LogNormal.from_moments(0.03, 0.024**2)
    assert (again.mu, again.sigma) == pytest.approx((ln.mu, ln.sigma))


def test_zero_constant() -> None:
    zero = LogNormal.constant(0.0)
    assert zero.mu == -math.inf
    assert zero.mean == 0.0
    assert zero.quantile(0.99) == 0.0
    assert zero.cdf(0.0) == 1.0


def test_vectorised_lognormal_handles_degenerate_entries() -> None:
    mu = np.array([math.log(0.01), math.log(0.01), -math.inf, math.inf])
    sigma = np.array([0.5, 0.0, 0.0, 0.0])
    x = np.full(4, 0.01)
    assert np.allclose(lognormal_cdf(x, mu, sigma), [0.5, 1.0, 1.0, 0.0])
    q = lognormal_quantile(np.full(4, 0.99), mu, sigma)
    assert q[0] == pytest.approx(0.01 * math.exp(0.5 * Z99))
    assert q[1] == pytest.approx(0.01)
    assert q[2] == 0.0
    assert q[3] == math.inf
    assert not np.any(np.isnan(lognormal_cdf(np.array([0.0, math.inf]), 0.0, 1.0)))


def test_moments_round_trip_vectorised() -> None:
    rng = np.random.default_rng(3)
    mu, sigma = rng.normal(-3.0, 1.0, 100), rng.uniform(0.0, 1.5, 100)
    mean, var = lognormal_moments(mu, sigma)
    back_mu, back_sigma = lognormal_from_moments(mean, var)
    assert np.allclose(back_mu, mu)
    assert np.allclose(back_sigma, sigma)
    zero_mu, zero_sigma = lognormal_from_moments(np.array([0.0]), np.array([0.0]))
    assert zero_mu[0] == -math.inf
    assert zero_sigma[0] == 0.0
