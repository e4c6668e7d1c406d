"""Routing modes (shares, nearest, least-loaded) and how replicas share queues."""

from __future__ import annotations

import numpy as np
import pytest
import simfleet as sf

from fleetplane.latency.queueing import mmc_mean_wait
from fleetplane.sim import simulate
from fleetplane.sim.build import build_model
from fleetplane.sim.engine import prepare, run_replication

MEAN = 0.010


def two_single_servers(rho: float, routing: str, duration: str = "2h") -> tuple[object, object]:
    """Two one-server replicas (b, c), each placed for half of the source's traffic."""
    fleet = sf.failover_fleet(rate=2 * rho / MEAN, servers=1)
    scenario = sf.scenario(duration=duration, warmup="1m", timeout="1d", routing=routing)
    return fleet, scenario


def test_shares_split_traffic_as_placed() -> None:
    fleet, scenario = two_single_servers(0.5, "shares", duration="20m")
    prep = prepare(build_model(fleet, sf.failover_placement(shares=(0.7, 0.3)), scenario))
    req = run_replication(prep, np.random.SeedSequence(3))
    at_b = prep.queue_site[req.queue] == prep.model.site_index["b"]
    assert at_b.mean() == pytest.approx(0.7, abs=4 * np.sqrt(0.21 / req.size))


def test_nearest_sends_everything_to_the_closest_replica() -> None:
    fleet, scenario = two_single_servers(0.3, "nearest", duration="10m")
    prep = prepare(build_model(fleet, sf.failover_placement(shares=(0.5, 0.5)), scenario))
    req = run_replication(prep, np.random.SeedSequence(3))
    assert np.all(prep.queue_site[req.queue] == prep.model.site_index["b"])


def test_least_loaded_balances_better_than_random_split_but_not_better_than_pooling() -> None:
    rho = 0.8
    placement = sf.failover_placement(shares=(0.5, 0.5))
    fleet, scenario = two_single_servers(rho, "leastLoaded")
    jsq = simulate(fleet, placement, scenario)
    sf.assert_conserved(jsq)
    sf.assert_little(jsq)
    wait = jsq.workload("w").wait.mean
    assert wait is not None
    lam = 2 * rho / MEAN
    random_split = mmc_mean_wait(lam / 2, 1 / MEAN, 1)  # 40 ms: two independent M/M/1
    pooled = mmc_mean_wait(lam, 1 / MEAN, 2)  # ~14 ms: one queue, two servers
    assert pooled < wait < 0.6 * random_split
    shares = simulate(fleet, placement, sf.scenario(duration="2h", warmup="1m", timeout="1d"))
    assert shares.workload("w").wait.mean == pytest.approx(random_split, rel=0.06)


@pytest.mark.parametrize(
    ("queues", "servers_per_queue", "queue_count"), [("shared", 2, 1), ("perReplica", 1, 2)]
)
def test_replicas_share_one_queue_or_have_their_own(
    queues: str, servers_per_queue: int, queue_count: int
) -> None:
    rho = 0.7
    fleet = sf.single_queue(rho, servers=2)  # concurrency 2 per replica...
    workload = fleet.workloads["w"]
    workload.spec.profiles[0].concurrency = 1  # ...made 1, with two replicas instead
    placement = sf.single_placement(replicas=2)
    scenario = sf.scenario(duration="2h", warmup="1m", timeout="1d", replicaQueues=queues)
    model = build_model(fleet, placement, scenario)
    assert len(model.queues) == queue_count
    assert all(q.servers == servers_per_queue for q in model.queues)
    result = simulate(fleet, placement, scenario)
    lam = 2 * rho / MEAN
    if queues == "shared":
        theory = mmc_mean_wait(lam, 1 / MEAN, 2)
    else:
        theory = mmc_mean_wait(lam / 2, 1 / MEAN, 1)
    assert result.workload("w").wait.mean == pytest.approx(theory, rel=0.06)
    sf.assert_little(result)


def test_a_source_the_placement_does_not_route_is_dropped_with_a_warning() -> None:
    fleet = sf.failover_fleet()
    fleet.add(sf.source("cam2", "a", 10.0))
    fleet.workloads["w"].spec.demand.append(
        type(fleet.workloads["w"].spec.demand[0])(source="cam2")
    )
    result = simulate(fleet, sf.failover_placement(), sf.scenario(duration="5m"))
    sf.assert_conserved(result)
    assert result.workload("w").outcomes.dropped == pytest.approx(3000, rel=0.1)
    assert any("cam2" in w and "dropped" in w for w in result.warnings)
