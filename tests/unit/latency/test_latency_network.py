"""Path composition, round trips, retransmission delays and all-pairs routing."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from fleetplane.latency.distributions import LogNormal, lognormal_moments
from fleetplane.latency.network import (
    RTO_FLOOR,
    LossDelay,
    default_rto,
    fenton_wilkinson,
    loss_retransmit,
    path_loss,
    path_one_way,
    round_trip,
    round_trip_many,
    shortest_median_paths,
)


def test_fenton_wilkinson_matches_mean_and_variance_exactly() -> None:
    rng = np.random.default_rng(5)
    mus, sigmas = rng.normal(-4.0, 0.5, (20, 4)), rng.uniform(0.0, 1.0, (20, 4))
    mu, sigma = fenton_wilkinson(mus, sigmas, axis=1)
    means, variances = lognormal_moments(mus, sigmas)
    got_mean, got_var = lognormal_moments(mu, sigma)
    assert np.allclose(got_mean, means.sum(axis=1), rtol=1e-12)
    assert np.allclose(got_var, variances.sum(axis=1), rtol=1e-10)
    mu0, _ = fenton_wilkinson(mus.T, sigmas.T, axis=0)
    assert np.allclose(mu0, mu)


def test_path_one_way_composes_by_moments_not_percentiles() -> None:
    links = [LogNormal.from_p50_p99(0.010, 0.040) for _ in range(3)]
    path = path_one_way(links)
    assert path.mean == pytest.approx(sum(link.mean for link in links))
    assert path.var == pytest.approx(sum(link.var for link in links))
    # The tail of a sum is far below the sum of the tails (links are independent).
    summed_p99 = sum(link.quantile(0.99) for link in links)
    assert links[0].quantile(0.99) < path.quantile(0.99) < 0.8 * summed_p99
    samples = sum(link.sample(np.random.default_rng(i), 400_000) for i, link in enumerate(links))
    assert path.quantile(0.99) == pytest.approx(np.quantile(samples, 0.99), rel=0.05)


def test_empty_path_is_zero_and_round_trip_doubles_moments() -> None:
    zero = path_one_way([])
    assert zero.mean == 0.0 and zero.quantile(0.99) == 0.0
    one_way = LogNormal.from_p50_p99(0.02, 0.05)
    rtt = round_trip(one_way)
    assert rtt.mean == pytest.approx(2.0 * one_way.mean)
    assert rtt.var == pytest.approx(2.0 * one_way.var)
    mu, sigma = round_trip_many(np.array([one_way.mu]), np.array([one_way.sigma]))
    assert (mu[0], sigma[0]) == pytest.approx((rtt.mu, rtt.sigma))
    assert round_trip(LogNormal.constant(0.0)).quantile(0.9) == 0.0


def test_loss_retransmit_is_a_normalised_backoff_mixture() -> None:
    rtt = LogNormal.from_p50_p99(0.05, 0.10)
    delay = loss_retransmit(rtt, 0.02, packets=3)
    p_first = 1.0 - 0.98**3
    assert sum(delay.weights) == pytest.approx(1.0)
    assert delay.weights[0] == pytest.approx(1.0 - p_first)
    assert delay.weights[1] == pytest.approx(p_first * 0.98)
    rto = default_rto(rtt)
    assert rto == max(RTO_FLOOR, rtt.mean + 4.0 * rtt.std)
    assert delay.delays[:3] == pytest.approx((0.0, rto, 3.0 * rto))
    pairs = zip(delay.weights, delay.delays, strict=True)
    assert delay.mean == pytest.approx(sum(w * d for w, d in pairs))
    assert loss_retransmit(rtt, 0.0) == LossDelay.none()
    assert loss_retransmit(rtt, 0.01, rto=0.5).delays[1] == 0.5
    assert default_rto(LogNormal.from_p50_p99(0.001, 0.002)) == RTO_FLOOR


def test_loss_delay_quantile_and_sampling() -> None:
    delay = loss_retransmit(LogNormal.from_p50_p99(0.05, 0.10), 0.05)
    assert delay.quantile(0.5) == 0.0
    assert delay.quantile(0.99) == delay.delays[1]
    draws = delay.sample(np.random.default_rng(1), 200_000)
    assert np.mean(draws > 0.0) == pytest.approx(0.05, abs=0.003)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"loss": 1.0}, "loss must be"),
        ({"loss": -0.1}, "loss must be"),
        ({"loss": 0.1, "packets": 0}, "packets"),
        ({"loss": 0.1, "rto": 0.0}, "rto"),
    ],
)
def test_loss_retransmit_rejects_bad_input(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        loss_retransmit(LogNormal(0.0, 0.1), **kwargs)  # type: ignore[arg-type]


def test_path_loss() -> None:
    assert path_loss([0.01, 0.02]) == pytest.approx(1.0 - 0.99 * 0.98)
    assert path_loss([]) == 0.0


def _link(median: float, sigma: float = 0.3) -> LogNormal:
    return LogNormal(math.log(median), sigma)


def _params(ln: LogNormal) -> tuple[float, float]:
    return ln.mu, ln.sigma


def test_routing_picks_lowest_total_median_and_composes_that_path() -> None:
    # 0-1 direct is 50 ms; 0-2-1 is 10 + 15 ms; 3 hangs off 1; 4 is isolated.
    ab, ac, cb, bd = _link(0.050), _link(0.010, 0.8), _link(0.015, 0.2), _link(0.002)
    table = shortest_median_paths(5, [(0, 1, ab), (0, 2, ac), (2, 1, cb), (1, 3, bd)])
    assert table.path(0, 1) == [0, 2, 1]
    assert table.path(3, 0) == [3, 1, 2, 0]
    assert _params(table.one_way(0, 1)) == pytest.approx(_params(path_one_way([ac, cb])))
    assert _params(table.one_way(0, 3)) == pytest.approx(_params(path_one_way([ac, cb, bd])))
    assert _params(table.one_way(3, 0)) == pytest.approx(_params(path_one_way([bd, cb, ac])))
    assert np.all(table.mu.diagonal() == -np.inf) and np.all(table.sigma.diagonal() == 0.0)
    assert table.reachable[0, 3] and not table.reachable[0, 4] and table.reachable[4, 4]
    assert table.mu[0, 4] == math.inf and table.sigma[0, 4] == 0.0
    assert table.path(0, 4) == []
    with pytest.raises(ValueError, match="not reachable"):
        table.one_way(4, 0)


def test_directed_links_and_parallel_links() -> None:
    table = shortest_median_paths(3, [(0, 1, _link(0.01)), (1, 2, _link(0.01))], directed=True)
    assert table.reachable[0, 2] and not table.reachable[2, 0]
    twice = shortest_median_paths(2, [(0, 1, _link(0.03)), (1, 0, _link(0.01, 0.5))])
    assert _params(twice.one_way(0, 1)) == pytest.approx(_params(_link(0.01, 0.5)))


def test_bad_edges_are_rejected() -> None:
    with pytest.raises(ValueError, match="different sites"):
        shortest_median_paths(2, [(0, 2, _link(0.01))])
    with pytest.raises(ValueError, match="different sites"):
        shortest_median_paths(2, [(1, 1, _link(0.01))])
    with pytest.raises(ValueError, match="zero link"):
        shortest_median_paths(2, [(0, 1, LogNormal.constant(0.0))])


def _reference_table(n: int, edges: list[tuple[int, int, LogNormal]]) -> tuple[np.ndarray, ...]:
    """Dijkstra from every site and a path walk per pair: slow but obviously right."""
    weights: dict[tuple[int, int], LogNormal] = {}
    for a, b, ln in edges:
        for key in ((a, b), (b, a)):
            if key not in weights or ln.mu < weights[key].mu:
                weights[key] = ln
    src, dst = zip(*weights, strict=True)
    graph = csr_matrix(([math.exp(weights[k].mu) for k in weights], (src, dst)), shape=(n, n))
    _, pred = dijkstra(graph, directed=True, return_predecessors=True)
    mu, sigma = np.full((n, n), math.inf), np.zeros((n, n))
    for s in range(n):
        for d in range(n):
            if s == d:
                mu[s, d] = -math.inf
            elif pred[s, d] >= 0:
                hops, node = [], d
                while node != s:
                    hops.append(weights[(int(pred[s, node]), node)])
                    node = int(pred[s, node])
                path = path_one_way(hops)
                mu[s, d], sigma[s, d] = path.mu, path.sigma
    return mu, sigma


def test_all_pairs_match_a_path_by_path_reference() -> None:
    rng = np.random.default_rng(2)
    n, hubs = 60, 4
    edges = [(i, j, _link(rng.uniform(0.01, 0.05), rng.uniform(0.1, 0.6)))
             for i in range(hubs) for j in range(i + 1, hubs)]
    edges += [(i, int(rng.integers(0, hubs)), _link(rng.uniform(0.001, 0.01)))
              for i in range(hubs, n - 2)]
    edges += [(int(a), int(b), _link(rng.uniform(0.001, 0.02)))
              for a, b in rng.integers(hubs, n - 2, (6, 2)) if a != b]
    edges.append((n - 2, n - 1, _link(0.004)))  # a separate two-site island
    table = shortest_median_paths(n, edges)
    mu, sigma = _reference_table(n, edges)
    assert np.array_equal(np.isinf(mu) & (mu > 0), ~table.reachable)
    assert np.allclose(table.mu, mu, rtol=1e-10, equal_nan=False)
    assert np.allclose(table.sigma, sigma, rtol=1e-8, atol=1e-12)


def test_a_fleet_without_links_reaches_only_itself() -> None:
    table = shortest_median_paths(3, [])
    assert table.reachable.tolist() == [
        [True, False, False],
        [False, True, False],
        [False, False, True],
    ]
    assert np.isinf(table.mu[0, 1]) and table.mu[0, 1] > 0
    assert np.isneginf(table.mu[1, 1])
