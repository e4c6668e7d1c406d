"""End-to-end quantiles against Monte Carlo, the batch form against the reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetplane.latency.distributions import LogNormal, ServiceTime
from fleetplane.latency.endtoend import (
    EndToEnd,
    end_to_end_quantile,
    end_to_end_quantile_many,
    mixture_quantile,
    mixture_quantile_many,
)
from fleetplane.latency.network import loss_retransmit, round_trip
from fleetplane.latency.queueing import WaitDist, mgc_wait

LEVELS = (0.5, 0.95, 0.99, 0.999)
SAMPLES = 1_000_000


def _within_monte_carlo(draws: np.ndarray, q: float, value: float, rel: float) -> bool:
    """``value`` within ``rel`` of the 99.9 % confidence interval of the sample quantile.

    The interval comes from the binomial count of draws below the quantile, so the
    test does not mistake Monte Carlo noise (about 1 % at p999 for heavy tails) for
    model error.
    """
    n = draws.size
    spread = 3.3 * math.sqrt(n * q * (1.0 - q))
    ordered = np.partition(draws, [int(n * q - spread), int(n * q + spread)])
    low, high = ordered[int(n * q - spread)], ordered[int(n * q + spread)]
    return bool(low * (1.0 - rel) <= value <= high * (1.0 + rel))


WAN = round_trip(LogNormal.from_p50_p99(0.020, 0.060))
CASES = {
    "lognormal network, lognormal service, queue": EndToEnd(
        ServiceTime(0.015, 0.7), WAN, 0.002, WaitDist(0.45, 0.02)
    ),
    "exponential service, heavy queue": EndToEnd(
        ServiceTime(0.010, 1.0), WAN, 0.0, WaitDist(0.9, 0.05)
    ),
    "constant network, deterministic service": EndToEnd(
        ServiceTime(0.008, 0.0), LogNormal.constant(0.030), 0.001, WaitDist(0.3, 0.01)
    ),
    "local request, gamma service": EndToEnd(
        ServiceTime(0.020, 1.5, "gamma"), None, 0.0005, WaitDist(0.6, 0.03)
    ),
    "lossy path, no queue": EndToEnd(
        ServiceTime(0.005, 0.4), WAN, 0.0, None, loss_retransmit(WAN, 0.02)
    ),
    "M/G/c from rates": EndToEnd(
        ServiceTime(0.05, 1.3), round_trip(LogNormal.from_p50_p99(0.002, 0.02)), 0.0,
        mgc_wait(70.0, ServiceTime(0.05, 1.3), 4),
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_reference_quantiles_match_monte_carlo(name: str) -> None:
    model = CASES[name]
    draws = model.sample(np.random.default_rng(20240), SAMPLES)
    for q in LEVELS:
        value = model.quantile(q)
        assert _within_monte_carlo(draws, q, value, rel=0.01), (name, q, value)
        assert end_to_end_quantile(q, model.rtt, model.storage, model.wait, model.service,
                                   model.loss) == value


def _batch(model: EndToEnd, q: float) -> float:
    rtt = model.rtt if model.rtt is not None else LogNormal.constant(0.0)
    wait = model.wait if model.wait is not None else WaitDist(0.0, 1.0)
    return float(end_to_end_quantile_many(
        q, rtt.mu, rtt.sigma, model.storage, wait.p_wait, wait.theta,
        model.service.mean, model.service.cv, loss=model.loss,
    ))


@pytest.mark.parametrize("name", [n for n in CASES if CASES[n].service.kind == "auto"])
def test_batch_quantiles_match_monte_carlo(name: str) -> None:
    model = CASES[name]
    draws = model.sample(np.random.default_rng(99), SAMPLES)
    for q in LEVELS:
        assert _within_monte_carlo(draws, q, _batch(model, q), rel=0.02), (name, q)


def _random_models(seed: int, n: int) -> list[EndToEnd]:
    rng = np.random.default_rng(seed)
    models = []
    for _ in range(n):
        sigma = float(rng.choice([0.0, rng.uniform(0.05, 1.0)]))
        rtt = LogNormal(math.log(rng.uniform(0.001, 0.1)), sigma)
        cv = float(rng.choice([0.0, 1.0, rng.uniform(0.1, 2.5)]))
        wait = WaitDist(rng.uniform(0.0, 1.0), float(np.exp(rng.uniform(-8.0, -1.5))))
        models.append(EndToEnd(ServiceTime(rng.uniform(0.0005, 0.05), cv),
                               None if rng.random() < 0.15 else rtt,
                               float(rng.choice([0.0, rng.uniform(0.0, 0.01)])),
                               None if rng.random() < 0.15 else wait))
    return models


def test_batch_agrees_with_reference_on_random_models() -> None:
    models = _random_models(seed=3, n=40)
    levels = np.array(LEVELS)
    rtt = [m.rtt if m.rtt is not None else LogNormal.constant(0.0) for m in models]
    wait = [m.wait if m.wait is not None else WaitDist(0.0, 1.0) for m in models]
    batch = end_to_end_quantile_many(
        levels, *(np.array(v)[:, None] for v in (
            [r.mu for r in rtt], [r.sigma for r in rtt], [m.storage for m in models],
            [w.p_wait for w in wait], [w.theta for w in wait],
            [m.service.mean for m in models], [m.service.cv for m in models],
        )),
    )
    reference = np.array([[m.quantile(q) for q in LEVELS] for m in models])
    assert batch.shape == (40, 4)
    assert np.max(np.abs(batch / reference - 1.0)) < 0.01


def test_unstable_and_unreachable_give_infinity() -> None:
    service = ServiceTime(0.01, 0.5)
    unstable = WaitDist(1.0, math.inf)
    assert end_to_end_quantile(0.5, WAN, 0.0, unstable, service) == math.inf
    assert _batch(EndToEnd(service, WAN, 0.0, unstable), 0.5) == math.inf
    unreachable = end_to_end_quantile_many(0.99, math.inf, 0.0, 0.0, 0.2, 0.01, 0.01, 0.5)
    assert float(unreachable) == math.inf
    # Only waiting requests are lost: below 1 - C the quantile stays finite.
    partly = WaitDist(0.4, math.inf)
    for q, finite in ((0.3, True), (0.59, True), (0.6, False), (0.9, False)):
        scalar = end_to_end_quantile(q, None, 0.0, partly, service)
        batch = float(end_to_end_quantile_many(q, -math.inf, 0.0, 0.0, 0.4, math.inf, 0.01, 0.5))
        assert math.isfinite(scalar) == finite == math.isfinite(batch)
        if finite:
            assert scalar == pytest.approx(service.quantile(q / 0.6), rel=1e-3)
            assert batch == pytest.approx(scalar, rel=1e-3)


def test_everything_constant_is_exact() -> None:
    batch = end_to_end_quantile_many([0.5, 0.999], math.log(0.02), 0.0, 0.001, 0.0, 1.0, 0.01, 0.0)
    assert batch == pytest.approx([0.031, 0.031])
    model = EndToEnd(ServiceTime(0.01, 0.0), LogNormal.constant(0.02), 0.001)
    assert model.quantile(0.999) == pytest.approx(0.031)


def test_mixture_of_sources() -> None:
    service, wait = ServiceTime(0.01, 0.6), WaitDist(0.4, 0.02)
    paths = [(0.01, 0.2), (0.08, 0.5), (0.03, 0.1)]
    weights = [0.5, 0.2, 0.3]
    parts = [EndToEnd(service, LogNormal(math.log(m), s), 0.001, wait) for m, s in paths]
    rng = np.random.default_rng(5)
    source = rng.choice(3, size=SAMPLES, p=weights)
    draws = np.choose(source, [p.sample(rng, SAMPLES) for p in parts])
    for q in LEVELS:
        scalar = mixture_quantile(q, weights, parts)
        assert _within_monte_carlo(draws, q, scalar, rel=0.01)
        batch = mixture_quantile_many(q, weights, np.log([m for m, _ in paths]),
                                      [s for _, s in paths], 0.001, 0.4, 0.02, 0.01, 0.6)
        assert float(batch) == pytest.approx(scalar, rel=0.005)


def test_mixture_with_an_unstable_source() -> None:
    service, ok = ServiceTime(0.01, 0.6), WaitDist(0.4, 0.02)
    stuck = WaitDist(1.0, math.inf)
    parts = [EndToEnd(service, None, 0.0, stuck), EndToEnd(service, None, 0.0, ok)]
    assert math.isfinite(mixture_quantile(0.3, [0.5, 0.5], parts))
    assert mixture_quantile(0.6, [0.5, 0.5], parts) == math.inf
    batch = mixture_quantile_many([0.3, 0.6], [0.5, 0.5], -math.inf, 0.0, 0.0, [1.0, 0.4],
                                  [math.inf, 0.02], 0.01, 0.6)
    assert batch[0] == pytest.approx(mixture_quantile(0.3, [0.5, 0.5], parts), rel=1e-3)
    assert batch[1] == math.inf


def test_batch_broadcasts() -> None:
    out = end_to_end_quantile_many(np.array([0.5, 0.99])[:, None], np.log([0.01, 0.02, 0.03]),
                                   0.3, 0.0, 0.5, 0.01, 0.01, 0.5)
    assert out.shape == (2, 3)
    assert np.all(np.diff(out, axis=0) > 0) and np.all(np.diff(out, axis=1) > 0)
    rows = mixture_quantile_many(0.9, np.ones((4, 3)), 0.0, 0.2, 0.0, 0.0, 1.0, 1.0, 0.5)
    assert rows.shape == (4,)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1.0, 0.0, 0.1, 0.0, 0.0, 1.0, 0.01, 0.5), "strictly between"),
        ((0.5, 0.0, -0.1, 0.0, 0.0, 1.0, 0.01, 0.5), "rtt_sigma"),
        ((0.5, 0.0, 0.1, -1.0, 0.0, 1.0, 0.01, 0.5), "storage"),
        ((0.5, 0.0, 0.1, 0.0, 1.5, 1.0, 0.01, 0.5), "wait_c"),
        ((0.5, 0.0, 0.1, 0.0, 0.5, 0.0, 0.01, 0.5), "wait_theta"),
        ((0.5, 0.0, 0.1, 0.0, 0.5, 1.0, 0.0, 0.5), "svc_mean"),
        ((0.5, math.nan, 0.1, 0.0, 0.5, 1.0, 0.01, 0.5), "rtt_mu"),
    ],
)
def test_batch_rejects_bad_input(args: tuple[float, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        end_to_end_quantile_many(*args)


def test_reference_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="strictly between"):
        end_to_end_quantile(0.0, None, 0.0, None, ServiceTime(0.01, 0.5))
    with pytest.raises(ValueError, match="storage"):
        EndToEnd(ServiceTime(0.01, 0.5), storage=-1.0)
    with pytest.raises(ValueError, match="weight"):
        mixture_quantile(0.5, [1.0], [])


_model = st.fixed_dictionaries({
    "rtt_mu": st.floats(math.log(0.001), math.log(0.2)),
    "rtt_sigma": st.sampled_from([0.0, 0.1, 0.4, 0.9]),
    "storage": st.floats(0.0, 0.01),
    "wait_c": st.floats(0.0, 1.0),
    "wait_theta": st.floats(1e-4, 0.2),
    "svc_mean": st.floats(0.0005, 0.05),
    "svc_cv": st.sampled_from([0.0, 0.3, 1.0, 1.8]),
})
_GROW = {"rtt_mu": 0.5, "storage": 0.005, "wait_c": 0.2, "wait_theta": 0.01, "svc_mean": 0.01}
_SLACK = 1.0 - 5e-4  # root finding stops at 1e-4 relative; allow for it


@settings(max_examples=40, deadline=None)
@given(_model, st.lists(st.floats(0.05, 0.999), min_size=2, max_size=6))
def test_quantile_is_monotone_in_level(model: dict[str, float], levels: list[float]) -> None:
    ordered = np.sort(np.array(levels))
    values = end_to_end_quantile_many(ordered, **model)
    assert np.all(values[1:] >= values[:-1] * _SLACK)


@settings(max_examples=40, deadline=None)
@given(_model, st.sampled_from(sorted(_GROW)), st.sampled_from([0.5, 0.9, 0.99]))
def test_quantile_grows_with_every_component(model: dict[str, float], part: str, q: float) -> None:
    bigger = dict(model)
    bigger[part] = model[part] + _GROW[part]
    bigger["wait_c"] = min(bigger["wait_c"], 1.0)
    base, grown = end_to_end_quantile_many(q, **model), end_to_end_quantile_many(q, **bigger)
    assert float(grown) >= float(base) * _SLACK
