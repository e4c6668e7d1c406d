"""Replica counts and predicted latency against M/M/c theory computed independently here.

With exponential service times the engine's M/G/c model is exactly M/M/c, and
the time in system of a request is: with probability 1 - C (Erlang C) just the
service time, otherwise an exponential wait (rate cμ - λ) plus the service.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from placement_fleets import fleet, image, inference, link, pool, site, source

from fleetplane.placement import plan
from fleetplane.placement._internal import feasibility, sizing
from fleetplane.placement._internal.context import PlanContext
from fleetplane.placement._internal.pipeline import choose_policy
from fleetplane.placement._internal.rules import compile_policy


def erlang_c(servers: int, load: float) -> float:
    """Probability of waiting in M/M/c, from the textbook sum."""
    if load >= servers:
        return 1.0
    top = load**servers / math.factorial(servers) * servers / (servers - load)
    return top / (sum(load**k / math.factorial(k) for k in range(servers)) + top)


def sojourn_tail(t: float, servers: int, lam: float, mu: float) -> float:
    """P(wait + service > t) in M/M/c."""
    c = erlang_c(servers, lam / mu)
    drain = servers * mu - lam
    if abs(drain - mu) < 1e-12:
        both = math.exp(-mu * t) * (1 + mu * t)
    else:
        both = (drain * math.exp(-mu * t) - mu * math.exp(-drain * t)) / (drain - mu)
    return (1 - c) * math.exp(-mu * t) + c * both


def sojourn_quantile(q: float, servers: int, lam: float, mu: float, shift: float = 0.0) -> float:
    lo, hi = 0.0, 10.0
    for _ in range(200):
        mid = (lo + hi) / 2
        if sojourn_tail(mid, servers, lam, mu) > 1 - q:
            lo = mid
        else:
            hi = mid
    return shift + hi


def fewest_replicas(q: float, target: float, lam: float, mu: float, per_replica: int) -> int:
    n = 1
    while lam >= n * per_replica * mu or sojourn_quantile(q, n * per_replica, lam, mu) > target:
        n += 1
    return n


def local_fleet(rate: float, concurrency: int, p99: str, **extra: object) -> object:
    return fleet(
        image(),
        site("s", pools=[pool(count=50, cpu=16, memory="64Gi")]),
        source("src", "s", rate=f"{rate}/s"),
        inference(
            "w",
            ["src"],
            p99=p99,
            profiles=[
                {
                    "hardware": "cpu",
                    "serviceTime": {"mean": "10ms", "cv": 1.0},
                    "concurrency": concurrency,
                }
            ],
            **extra,  # type: ignore[arg-type]
        ),
    )


@pytest.mark.parametrize(
    ("rate", "concurrency", "p99_ms"),
    # An exponential 10 ms service alone has a p99 of 46 ms: targets sit above it.
    [(250.0, 1, 60), (250.0, 4, 60), (30.0, 1, 80), (900.0, 2, 55), (5.0, 1, 70)],
)
def test_replicas_are_the_fewest_that_meet_p99(rate: float, concurrency: int, p99_ms: int) -> None:
    result = plan(local_fleet(rate, concurrency, f"{p99_ms}ms"))  # type: ignore[arg-type]
    (placed,) = result.placement.spec.workloads
    (assignment,) = placed.assignments
    expected = fewest_replicas(0.99, p99_ms / 1000, rate, 100.0, concurrency)
    assert assignment.replicas == expected
    # ... and the prediction is the M/M/c quantile at that count.
    servers = expected * concurrency
    assert placed.predicted.p99 == pytest.approx(
        sojourn_quantile(0.99, servers, rate, 100.0), rel=2e-3
    )
    assert placed.predicted.p50 == pytest.approx(
        sojourn_quantile(0.5, servers, rate, 100.0), rel=2e-3
    )


def test_throughput_slo_above_demand_sizes_for_the_throughput() -> None:
    f = local_fleet(100.0, 1, "1s")
    f.workloads["w"].spec.slo.throughput = 450.0
    result = plan(f)  # type: ignore[arg-type]
    (placed,) = result.placement.spec.workloads
    # 450/s of 10 ms requests needs more than 4.5 busy servers.
    assert placed.assignments[0].replicas == 5


def test_replica_bounds() -> None:
    low = plan(local_fleet(5.0, 1, "1s", replicas=(3, 10)))  # type: ignore[arg-type]
    assert low.placement.spec.workloads[0].assignments[0].replicas == 3
    capped = plan(local_fleet(900.0, 1, "55ms", replicas=(1, 4)))  # type: ignore[arg-type]
    assert not capped.placement.spec.workloads
    (missing,) = capped.placement.spec.unplaceable
    assert "needs more than 4 replicas" in missing.reason


def test_prediction_adds_a_constant_round_trip() -> None:
    f = fleet(
        image(),
        site("edge"),
        site("hub", tier="regional", pools=[pool(count=50, cpu=16, memory="64Gi")]),
        link("edge", "hub", p50="7ms", p99="7ms"),
        source("src", "edge", rate="200/s"),
        inference(
            "w",
            ["src"],
            p99="100ms",
            residency=["eu"],
            profiles=[{"hardware": "cpu", "serviceTime": {"mean": "10ms", "cv": 1.0}}],
        ),
    )
    f.sites["edge"].spec.cordoned = True  # force the hub: the request crosses the link twice
    result = plan(f)
    (placed,) = result.placement.spec.workloads
    (assignment,) = placed.assignments
    assert assignment.site == "hub"
    n = assignment.replicas
    assert n == fewest_replicas(0.99, 0.100 - 0.014, 200.0, 100.0, 1)
    assert placed.predicted.p99 == pytest.approx(
        sojourn_quantile(0.99, n, 200.0, 100.0, shift=0.014), rel=2e-3
    )


def test_prediction_is_the_percentile_of_the_slowest_served_source() -> None:
    f = fleet(
        image(),
        site("a", pools=[pool(count=50, cpu=16, memory="64Gi")]),
        site("b", cordoned=True),
        link("a", "b", p50="20ms", p99="20ms"),
        source("near", "a", rate="100/s"),
        source("far", "b", rate="100/s"),
        inference(
            "w",
            ["near", "far"],
            p99="100ms",
            profiles=[{"hardware": "cpu", "serviceTime": {"mean": "10ms", "cv": 1.0}}],
        ),
    )
    result = plan(f)
    (placed,) = result.placement.spec.workloads
    (assignment,) = placed.assignments
    n = assignment.replicas
    lam = 200.0
    # The far source's requests cross the 20 ms link twice: its percentiles bind.
    assert placed.predicted.p99 == pytest.approx(
        sojourn_quantile(0.99, n, lam, 100.0, shift=0.040), rel=2e-3
    )
    assert placed.predicted.p50 == pytest.approx(
        sojourn_quantile(0.5, n, lam, 100.0, shift=0.040), rel=2e-3
    )
    assert placed.predicted.p99 <= 0.100
    # ... and n is the fewest replicas for which it does.
    assert n == fewest_replicas(0.99, 0.100 - 0.040, lam, 100.0, 1)


def test_exact_sizing_never_exceeds_the_replica_bound() -> None:
    # 900/s of 10 ms requests needs at least 10 servers for a stable queue, and
    # 10 would meet a 1 s p99; with replicas.max 4 no count is allowed.
    f = local_fleet(900.0, 1, "1s", replicas=(1, 4))
    ctx = PlanContext.build(f, compile_policy(choose_policy(f, None)))  # type: ignore[arg-type]
    (cands,) = feasibility.candidates_for(ctx, [ctx.view("w")])
    groups = cands.source_ok
    request = sizing.Request(
        cands, np.arange(cands.size), groups, sizing.design_rates(cands) @ groups
    )
    assert sizing.exact([request])[0].tolist() == [sizing.UNSIZEABLE] * cands.size
    assert sizing.conservative([request])[0].tolist() == [sizing.UNSIZEABLE] * cands.size
