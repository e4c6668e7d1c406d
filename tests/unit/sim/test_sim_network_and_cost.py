"""Network delay per link, storage reads, egress bytes and money, cost per 1,000 requests."""

from __future__ import annotations

import numpy as np
import pytest
import simfleet as sf

from fleetplane.latency.distributions import LogNormal
from fleetplane.model.units import HOURS_PER_MONTH
from fleetplane.sim import simulate
from fleetplane.sim.build import build_model
from fleetplane.sim.engine import prepare, run_replication


def test_round_trip_is_two_independent_draws_of_the_link_lognormal() -> None:
    scenario = sf.scenario(duration="30m")
    prep = prepare(build_model(sf.failover_fleet(), sf.failover_placement(), scenario))
    req = run_replication(prep, np.random.SeedSequence(11))
    link = LogNormal.from_p50_p99(0.010, 0.020)
    reference = link.sample(np.random.default_rng(0), 400_000) + link.sample(
        np.random.default_rng(1), 400_000
    )
    for q in (0.5, 0.9, 0.99):
        assert np.quantile(req.network, q) == pytest.approx(np.quantile(reference, q), rel=0.02)
    one_way = req.arrival - req.dispatch
    assert np.median(one_way) == pytest.approx(0.010, rel=0.02)
    assert np.quantile(one_way, 0.99) == pytest.approx(0.020, rel=0.04)


def test_multi_hop_routes_follow_the_lowest_median_path() -> None:
    fleet = sf.fleet(
        sf.site("a"),
        sf.site("m"),
        sf.site("b"),
        sf.link("a-m", "a", "m", "5ms", "10ms"),
        sf.link("m-b", "m", "b", "5ms", "10ms"),
        sf.link("a-b", "a", "b", "30ms", "40ms"),  # direct but slower
        sf.source("cam", "a", 50.0),
        sf.workload("w", ["cam"]),
    )
    placement = sf.placement({"w": [{"site": "b", "replicas": 1, "sources": {"cam": 1.0}}]})
    model = build_model(fleet, placement, sf.scenario(duration="5m"))
    route = model.routes[model.streams[0].candidates[0].route]
    assert [model.link_names[i] for i in route.links] == ["a-m", "m-b"]
    result = simulate(fleet, placement, sf.scenario(duration="5m"))
    assert {link.link for link in result.links} == {"a-m", "m-b"}


def test_storage_reads_add_the_fastest_acceptable_media_latency() -> None:
    fleet = sf.single_queue(0.3)
    fleet.workloads["w"].spec.storage.reads = 3
    result = simulate(fleet, sf.single_placement(), sf.scenario(duration="5m"))
    assert result.workload("w").breakdown["storage"] == pytest.approx(3 * 100e-6)


def test_egress_bytes_per_link_direction_and_its_price() -> None:
    result = simulate(
        sf.failover_fleet(rate=50), sf.failover_placement(), sf.scenario(duration="10m")
    )
    w = result.workload("w")
    requests = w.outcomes.requests
    (link,) = result.links
    assert link.link == "a-b"
    assert link.bytes_a_to_b == pytest.approx(requests * 100_000)
    assert link.bytes_b_to_a == 0.0
    assert link.egress_cost == pytest.approx(requests * 100_000 / 1e9 * 0.09)
    assert w.egress_bytes == pytest.approx(requests * 100_000)


def test_cost_per_1k_requests_is_the_monthly_cost_over_the_monthly_volume() -> None:
    result = simulate(
        sf.failover_fleet(rate=50), sf.failover_placement(), sf.scenario(duration="10m")
    )
    w = result.workload("w")
    month = HOURS_PER_MONTH * 3600
    egress_month = w.egress_bytes / 1e9 * 0.09 / 600 * month
    assert w.cost.compute == 100.0  # from the placement
    assert w.cost.egress == pytest.approx(egress_month)
    assert w.cost.total == pytest.approx(100.0 + egress_month)
    assert w.cost.per_1k_requests == pytest.approx(w.cost.total / (w.throughput * month) * 1000)


def test_predicted_p99_is_compared_and_flagged_beyond_20_percent() -> None:
    fleet = sf.single_queue(0.5)
    scenario = sf.scenario(duration="30m")
    simulated = simulate(fleet, sf.single_placement(), scenario).workload("w").latency.p99
    assert simulated is not None
    for predicted, flagged in ((simulated * 1.1, False), (simulated * 1.5, True)):
        placement = sf.single_placement()
        placement.spec.workloads[0].predicted.p99 = predicted
        comparison = simulate(fleet, placement, scenario).workload("w").comparison
        assert comparison.predicted_p99 == predicted
        assert comparison.flagged is flagged


def test_a_p99_from_too_few_requests_is_not_flagged() -> None:
    fleet = sf.single_queue(0.5)  # 50 requests/s: 500 in 10 s
    placement = sf.single_placement()
    placement.spec.workloads[0].predicted.p99 = 1.0  # far off
    comparison = simulate(fleet, placement, sf.scenario(duration="10s")).workload("w").comparison
    assert comparison.relative_difference is not None and comparison.relative_difference > 0.5
    assert comparison.flagged is False
