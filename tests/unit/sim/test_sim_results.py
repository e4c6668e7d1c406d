"""Determinism, SLO attainment, overload and timeouts, time series, sweeps, the HTML report."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import simfleet as sf

from fleetplane.errors import ValidationError
from fleetplane.sim import simulate, sweep
from fleetplane.sim.report import render_report, render_sweep_report


def comparable(result: Any) -> dict[str, Any]:
    document = result.to_document()
    del document["run"]["wallSeconds"], document["run"]["requestsPerSecond"]
    return document


def faulty_scenario(**extra: Any) -> Any:
    extra.setdefault("replications", 2)
    return sf.scenario(
        duration="15m",
        timeout="1s",
        faults=[
            {"type": "siteDown", "site": "b", "at": "5m", "duration": "2m"},
            {
                "type": "linkDegraded",
                "link": "a-c",
                "at": "6m",
                "duration": "3m",
                "latencyFactor": 2,
            },
        ],
        **extra,
    )


@pytest.mark.parametrize("routing", ["shares", "nearest", "leastLoaded"])
def test_same_inputs_and_seed_give_identical_results(routing: str) -> None:
    fleet, placement = sf.failover_fleet(), sf.failover_placement(shares=(0.6, 0.4))
    scenario = faulty_scenario(routing=routing, replicaQueues="perReplica")
    first = simulate(fleet, placement, scenario)
    again = simulate(fleet, placement, scenario)
    assert comparable(first) == comparable(again)
    other = simulate(fleet, placement, scenario, seed=scenario.spec.seed + 1)
    assert comparable(other) != comparable(first)
    assert other.seed == scenario.spec.seed + 1
    sf.assert_conserved(first)


def test_slo_attainment_counts_timeouts_and_drops_as_misses() -> None:
    result = simulate(sf.failover_fleet(), sf.failover_placement(backup=False), faulty_scenario())
    w = result.workload("w")
    (target,) = w.slo
    assert target.quantile == 0.99 and target.target == pytest.approx(0.2)
    within_ok = w.outcomes.ok - 0  # every OK request here is far below 200 ms...
    assert w.latency.p50 is not None and w.latency.p50 < 0.1
    # ...so attainment is about the share answered in time: misses are the drops and timeouts.
    assert target.attainment == pytest.approx(within_ok / w.outcomes.requests, abs=0.002)
    assert w.outcomes.dropped > 0 and w.timed_out > 0
    assert w.slo_met is False
    assert result.slo_attainment == pytest.approx(target.attainment)


def test_overload_with_deadline_propagation_keeps_the_server_busy_with_live_requests() -> None:
    fleet = sf.single_queue(1.5)  # 150 requests/s offered to a 100/s server
    scenario = sf.scenario(duration="10m", timeout="500ms")
    result = simulate(fleet, sf.single_placement(), scenario)
    w = result.workload("w")
    sf.assert_conserved(result)
    sf.assert_little(result)
    # Skipped requests cost nothing, so the server works at capacity on live ones...
    assert (w.outcomes.ok + w.outcomes.late) / 600 == pytest.approx(100, rel=0.05)
    assert w.outcomes.expired == pytest.approx(w.outcomes.requests / 3, rel=0.05)
    # ...and timed-out requests are counted at the timeout in the percentiles.
    assert w.latency.p99 == pytest.approx(0.5)
    plain = sf.scenario(duration="10m", timeout="500ms", deadlinePropagation=False)
    late = simulate(fleet, sf.single_placement(), plain).workload("w")
    assert late.outcomes.expired == 0
    assert late.outcomes.late > 0.9 * late.outcomes.requests
    assert late.throughput < 0.2 * w.throughput


def test_time_series_has_one_bucket_per_minute_and_shows_the_fault() -> None:
    fleet, placement = sf.failover_fleet(), sf.failover_placement()
    result = simulate(fleet, placement, faulty_scenario(replications=1))
    series = result.series
    assert series.bucket == 60.0 and len(series.starts) == 15
    w = series.workloads["w"]
    assert sum(w.requests) == result.workload("w").outcomes.requests
    assert sum(w.timeouts) == result.workload("w").timed_out
    assert w.timeouts[5] > 0 and w.timeouts[2] == 0  # the site went down at minute 5
    utilisation = series.site_utilisation
    assert utilisation["b"][6] == 0.0 and utilisation["c"][6] > 0.0  # c took over
    assert utilisation["b"][2] > 0.0 and utilisation["c"][2] == 0.0
    assert len(series.in_system) == 15
    mean_b = float(np.mean(utilisation["b"]))
    site_b = next(s for s in result.sites if s.site == "b")
    assert site_b.utilisation == pytest.approx(mean_b, rel=1e-6)


def test_sweep_runs_each_demand_and_cost_per_request_falls_with_volume() -> None:
    fleet, placement = sf.single_queue(0.4), sf.single_placement()
    results = sweep(fleet, placement, sf.scenario(duration="10m"), "demand", [0.5, 1.0, 2.0])
    assert [r.demand_scale for r in results] == [0.5, 1.0, 2.0]
    rates = [r.workload("w").offered_rate for r in results]
    assert rates[0] == pytest.approx(20, rel=0.05) and rates[2] == pytest.approx(80, rel=0.05)
    costs = [r.workload("w").cost.per_1k_requests for r in results]
    assert costs[0] > costs[1] > costs[2]
    attainment = [r.workload("w").slo_attainment for r in results]
    assert attainment[0] >= attainment[1] >= attainment[2]
    page = render_sweep_report("demand", [0.5, 1.0, 2.0], results)
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page


def test_sweep_rejects_unknown_parameters_and_bad_values() -> None:
    fleet, placement = sf.single_queue(0.4), sf.single_placement()
    with pytest.raises(ValidationError, match="cannot sweep 'latency'"):
        sweep(fleet, placement, sf.scenario(duration="1m"), "latency", [1.0])
    with pytest.raises(ValidationError, match="must be > 0"):
        sweep(fleet, placement, sf.scenario(duration="1m"), "demand", [0.0])


def test_report_is_self_contained_html_with_the_three_figures() -> None:
    result = simulate(sf.failover_fleet(), sf.failover_placement(), faulty_scenario())
    page = render_report(result)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("<svg") == 3
    assert "siteDown" in page and "Little" in page
    assert "src=" not in page.replace("<svg", "")  # nothing fetched from elsewhere


def test_a_run_too_big_for_memory_is_refused_before_it_starts() -> None:
    from fleetplane.errors import SimulationError

    fleet = sf.single_queue(0.5)  # 50 requests/s
    huge = sf.scenario(duration="7d")  # 30 M requests
    with pytest.raises(
        SimulationError, match=r"about 30,2\d\d,\d\d\d requests.*shorten the duration"
    ):
        simulate(fleet, sf.single_placement(), huge)
