"""prediction.quantiles solves each distinct path once; every element still gets its own value.

A path's quantile depends on its own inputs alone, so equal inputs (a third of them
in a plan: the same source and pool asked about for several workloads or levels) share
one solve. The answer must be, bit for bit, what solving every element gives.
"""

from __future__ import annotations

import numpy as np

from fleetplane.placement._internal import prediction


def _paths(rng: np.random.Generator, n: int) -> tuple[np.ndarray, prediction.Parts, np.ndarray]:
    q = rng.choice([0.5, 0.9, 0.99, 0.999], n)
    parts = prediction.Parts(
        rtt_mu=np.log(rng.uniform(0.001, 0.08, n)),
        rtt_sigma=rng.uniform(0.0, 0.6, n),
        loss=rng.choice([0.0, 0.0, 0.001, 0.02], n),
        storage=rng.choice([0.0, 0.002, 0.01], n),
        svc_mean=rng.uniform(0.002, 0.04, n),
        svc_cv=rng.choice([0.0, 0.5, 1.0, 1.5], n),
    )
    theta = rng.uniform(0.001, 0.05, n)
    return q, parts, theta


def test_repeated_paths_get_the_values_of_solving_each_element() -> None:
    rng = np.random.default_rng(3)
    q, parts, theta = _paths(rng, 40)
    # 200 elements drawn from 40 distinct ones, shuffled, plus unreachable ones.
    pick = rng.integers(0, 40, 200)
    many = parts.take(pick)
    many.rtt_mu[:5], many.loss[:5] = np.inf, 0.0  # unreachable
    c = rng.uniform(0.0, 0.9, 40)[pick]
    got = prediction.quantiles(q[pick], many, c, theta[pick])
    one_by_one = np.array(
        [
            prediction.quantiles(
                q[pick][i : i + 1], many.take(np.array([i])), c[i : i + 1], theta[pick][i : i + 1]
            )[0]
            for i in range(pick.size)
        ]
    )
    np.testing.assert_array_equal(got, one_by_one)
    assert np.isinf(got[:5]).all()


def test_a_scalar_level_and_no_queue_work_as_before() -> None:
    rng = np.random.default_rng(4)
    _, parts, _ = _paths(rng, 30)
    doubled = parts.take(np.concatenate([np.arange(30), np.arange(30)]))
    got = prediction.quantiles(np.float64(0.99), doubled)
    np.testing.assert_array_equal(got[:30], got[30:])
    alone = prediction.quantiles(np.full(30, 0.99), parts)
    np.testing.assert_array_equal(got[:30], alone)


def test_inputs_equal_only_in_value_are_not_merged() -> None:
    # 0.0 and -0.0 compare equal but are different inputs: each is solved as given.
    rng = np.random.default_rng(5)
    q, parts, theta = _paths(rng, 2)
    pair = parts.take(np.array([0, 0]))
    pair.storage[:] = [0.0, -0.0]
    first, again = prediction._distinct_paths(
        np.full(2, q[0]), pair, np.zeros(2), np.full(2, theta[0])
    )
    assert first is None and again is None
