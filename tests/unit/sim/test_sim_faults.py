"""Faults: site down with failover after the detection delay, partitions, degraded links.

The request-level checks look at every request of one replication (engine
level); the totals go through the public ``simulate``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import simfleet as sf

from fleetplane.sim import simulate
from fleetplane.sim.build import build_model
from fleetplane.sim.engine import DROPPED, LOST, OK, Prepared, Requests, prepare, run_replication

DOWN_AT, DOWN_FOR, DETECT = 600.0, 300.0, 5.0


def run_raw(fleet: Any, placement: Any, scenario: Any, seed: int = 1) -> tuple[Prepared, Requests]:
    prep = prepare(build_model(fleet, placement, scenario))
    return prep, run_replication(prep, np.random.SeedSequence(seed))


def served_at(prep: Prepared, req: Requests, site: str) -> npt.NDArray[np.bool_]:
    index = prep.model.site_index[site]
    return (req.queue >= 0) & (prep.queue_site[np.maximum(req.queue, 0)] == index)


def site_down(**extra: Any) -> Any:
    return sf.scenario(
        duration="20m",
        timeout="2s",
        detectionDelay=f"{DETECT:g}s",
        faults=[{"type": "siteDown", "site": "b", "at": "10m", "duration": "5m"}],
        **extra,
    )


def test_site_down_fails_over_to_the_next_replica_after_the_detection_delay() -> None:
    prep, req = run_raw(sf.failover_fleet(), sf.failover_placement(), site_down())
    t = req.dispatch
    at_b, at_c = served_at(prep, req, "b"), served_at(prep, req, "c")
    undetected = (t >= DOWN_AT) & (t < DOWN_AT + DETECT)
    rerouted = (t >= DOWN_AT + DETECT) & (t < DOWN_AT + DOWN_FOR)
    # Sent to b during the detection window: lost, i.e. timed out.
    assert np.all(at_b[undetected]) and np.all(req.outcome[undetected] == LOST)
    assert np.count_nonzero(undetected) > 300  # ~100/s for 5 s
    # After detection, everything goes to c and is answered.
    assert np.all(at_c[rerouted]) and np.all(req.outcome[rerouted] == OK)
    # Before the fault and after recovery, b serves everything.
    normal = (t < DOWN_AT - 1.0) | (t >= DOWN_AT + DOWN_FOR)
    assert np.all(at_b[normal]) and np.all(req.outcome[normal] == OK)
    # The only other losses: requests inside b when it went down.
    lost_early = (req.outcome == LOST) & (t < DOWN_AT)
    assert np.all(req.arrival[lost_early] < DOWN_AT)
    leave = req.start + req.service + req.storage
    assert np.all(leave[lost_early] > DOWN_AT)
    assert np.count_nonzero(req.outcome == LOST) == np.count_nonzero(undetected) + np.count_nonzero(
        lost_early
    )


def test_site_down_counts_every_request_once() -> None:
    result = simulate(sf.failover_fleet(), sf.failover_placement(), site_down(replications=2))
    sf.assert_conserved(result)
    sf.assert_little(result)
    w = result.workload("w")
    # About 100/s × 5 s per replication lost in the detection window, plus a few in flight.
    assert 2 * 400 < w.outcomes.lost < 2 * 620
    assert w.timed_out == w.outcomes.lost + w.outcomes.late + w.outcomes.expired
    assert w.outcomes.dropped == 0
    assert [f.type for f in result.faults] == ["siteDown"]


def test_without_a_backup_requests_are_dropped_once_the_failure_is_detected() -> None:
    _, req = run_raw(sf.failover_fleet(), sf.failover_placement(backup=False), site_down())
    t = req.dispatch
    rerouted = (t >= DOWN_AT + DETECT) & (t < DOWN_AT + DOWN_FOR)
    assert np.all(req.outcome[rerouted] == DROPPED)
    assert np.all(req.outcome[(t >= DOWN_AT) & (t < DOWN_AT + DETECT)] == LOST)
    result = simulate(sf.failover_fleet(), sf.failover_placement(backup=False), site_down())
    sf.assert_conserved(result)
    assert result.workload("w").outcomes.dropped == pytest.approx(100 * 295, rel=0.05)


def test_with_failover_off_requests_keep_going_to_the_dead_site() -> None:
    prep, req = run_raw(sf.failover_fleet(), sf.failover_placement(), site_down(failover=False))
    down = (req.dispatch >= DOWN_AT) & (req.dispatch < DOWN_AT + DOWN_FOR - 0.1)
    assert np.all(req.outcome[down] == LOST)
    assert not np.any(served_at(prep, req, "c"))


def test_partition_cuts_the_route_until_detected_then_fails_over() -> None:
    scenario = sf.scenario(
        duration="20m",
        timeout="2s",
        detectionDelay="5s",
        faults=[{"type": "partition", "site": "a", "peer": "b", "at": "10m", "duration": "5m"}],
    )
    prep, req = run_raw(sf.failover_fleet(), sf.failover_placement(), scenario)
    t = req.dispatch
    undetected = (t >= DOWN_AT) & (t < DOWN_AT + DETECT)
    assert np.all(req.outcome[undetected] == LOST)
    rerouted = (t >= DOWN_AT + DETECT) & (t < DOWN_AT + DOWN_FOR)
    assert np.all(served_at(prep, req, "c")[rerouted]) and np.all(req.outcome[rerouted] == OK)
    # Unlike a crash, requests already at b are unaffected.
    assert not np.any((req.outcome == LOST) & (t < DOWN_AT))


def test_degraded_link_multiplies_its_latency_while_the_fault_lasts() -> None:
    scenario = sf.scenario(
        duration="20m",
        faults=[
            {
                "type": "linkDegraded",
                "link": "a-b",
                "at": "10m",
                "duration": "5m",
                "latencyFactor": 3,
            }
        ],
    )
    _, req = run_raw(sf.failover_fleet(), sf.failover_placement(), scenario)
    t = req.dispatch
    during = (t >= DOWN_AT) & (t < DOWN_AT + DOWN_FOR)
    ratio = req.network[during].mean() / req.network[~during].mean()
    assert ratio == pytest.approx(3.0, rel=0.03)


def test_degraded_link_extra_loss_adds_retransmissions() -> None:
    scenario = sf.scenario(
        duration="20m",
        timeout="10s",
        faults=[
            {
                "type": "linkDegraded",
                "link": "a-b",
                "at": "10m",
                "duration": "5m",
                "extraLoss": "5%",
            }
        ],
    )
    _, req = run_raw(sf.failover_fleet(), sf.failover_placement(), scenario)
    t = req.dispatch
    during = (t >= DOWN_AT) & (t < DOWN_AT + DOWN_FOR)
    retransmitted = req.network >= 0.2  # RTO floor; the link alone never gets near 200 ms
    expected = 1 - 0.95**2  # request or response lost
    n = np.count_nonzero(during)
    assert retransmitted[during].mean() == pytest.approx(expected, abs=4 * np.sqrt(expected / n))
    assert retransmitted[~during].mean() == 0.0
