"""The cost model term by term, against numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
from placement_fleets import fleet, image, inference, job, link, policy, pool, site, source

from fleetplane.model.fleet import Fleet
from fleetplane.model.placement import CostBreakdown
from fleetplane.placement import plan
from fleetplane.placement._internal import feasibility
from fleetplane.placement._internal.candidates import Allocation, Candidates
from fleetplane.placement._internal.context import PlanContext
from fleetplane.placement._internal.pipeline import choose_policy
from fleetplane.placement._internal.rules import compile_policy
from fleetplane.placement._internal.scoring import breakdown

HOURS = 730.0
SECONDS = HOURS * 3600.0


def cost_fleet(*extra: dict[str, object]) -> Fleet:
    return fleet(
        *extra,
        image(),
        # Owned store box: 7,300 over 10 months = 730/month = 1.00/hour for
        # 8 cores + 16 GiB = 8 + 16/8 = 10 capacity units, so 0.10 per unit-hour.
        site(
            "store",
            pools=[pool(count=1, cpu=8, memory="16Gi", watts="100W")],
            capex={"amount": 7300, "amortisationMonths": 10},
            energy_price="0.20/kWh",
        ),
        site("mid", tier="regional"),
        site("hub", tier="regional", cpu_hour="0.04/h", memory_hour="0.005/h"),
        # Bytes cost 0.01 store→mid and 0.02 mid→hub; the other way 0.04 and 0.03.
        link("store", "mid", p50="2ms", p99="2ms", a_to_b="0.01/GB", b_to_a="0.04/GB"),
        link("mid", "hub", p50="2ms", p99="2ms", a_to_b="0.02/GB", b_to_a="0.03/GB"),
        source("cams", "store", rate="10/s", size="1MB"),
        inference(
            "w",
            ["cams"],
            p99="1s",
            cpu=2,
            memory="4Gi",
            profiles=[
                {
                    "hardware": "cpu",
                    "serviceTime": {"mean": "5ms", "cv": 1.0},
                    "energyPerRequest": "1J",
                    "power": "10W",
                }
            ],
            model={"artifact": "oci://m", "size": "1GB", "updatesPerDay": 2},
        ),
    )


def candidates(f: Fleet) -> tuple[PlanContext, Candidates]:
    ctx = PlanContext.build(f, compile_policy(choose_policy(f, None)))
    (cands,) = feasibility.candidates_for(ctx, [ctx.view("w")])
    return ctx, cands


def priced(site_name: str, replicas: int = 1) -> CostBreakdown:
    ctx, cands = candidates(cost_fleet())
    (i,) = [j for j in range(cands.size) if ctx.index.sites[int(cands.site[j])].name == site_name]
    return breakdown(cands, Allocation(i, replicas, (1.0,), (1.0,)))


def test_opex_compute_is_hourly_prices_times_allocation() -> None:
    # 2 cores × 0.04 + 4 GiB × 0.005 = 0.10 per hour, per replica.
    assert priced("hub", replicas=3).compute == pytest.approx(3 * 0.10 * HOURS)


def test_capex_compute_is_the_amortised_rate_per_capacity_unit() -> None:
    # 2 cores + 4 GiB/8 = 2.5 units × 0.10 per unit-hour.
    assert priced("store").compute == pytest.approx(2.5 * 0.10 * HOURS)


def test_egress_follows_the_path_in_the_direction_travelled() -> None:
    gb_per_month = 10 * 1e6 * SECONDS / 1e9
    assert priced("hub").egress == pytest.approx(gb_per_month * (0.01 + 0.02))
    assert priced("mid").egress == pytest.approx(gb_per_month * 0.01)
    assert priced("store").egress == 0.0


def test_model_distribution_comes_from_the_cheapest_regional_mirror() -> None:
    gb_per_month = 1.0 * 2 * HOURS / 24
    # Mirrors at mid and hub: the store pulls from mid for 0.04/GB.
    assert priced("store").model_distribution == pytest.approx(gb_per_month * 0.04)
    assert priced("mid").model_distribution == 0.0
    assert priced("hub").model_distribution == 0.0


def test_energy_node_share_busy_power_and_per_request() -> None:
    idle = 0.25 * 100 * HOURS / 1000 * 0.20  # a quarter of the node (2/8 cpu, 4/16 GiB)
    busy = 10 * (10 * 0.005) * HOURS / 1000 * 0.20  # 10 W × 0.05 busy replicas
    per_request = 10 * SECONDS / 3.6e6 * 0.20  # 1 J per request
    assert priced("store").energy == pytest.approx(idle + busy + per_request)
    # The cloud sites have no energy price: energy is in their hourly price.
    assert priced("hub").energy == 0.0


def test_two_replicas_double_what_scales_with_replicas_only() -> None:
    one, two = priced("store", 1), priced("store", 2)
    assert two.compute == pytest.approx(2 * one.compute)
    assert two.egress == one.egress
    assert two.model_distribution == one.model_distribution
    idle = 0.25 * 100 * HOURS / 1000 * 0.20
    assert two.energy - one.energy == pytest.approx(idle)


def test_prefer_penalty_is_kept_apart_from_money() -> None:
    rules = [
        {"name": "cloud", "when": "true", "prefer": "site.tier == 'regional'", "weight": 10000}
    ]
    result = plan(cost_fleet(policy(rules)))
    (placed,) = result.placement.spec.workloads
    # The 10,000/month penalty outweighs the store's savings, so the plan moves
    # to a regional site; money totals never include penalties.
    assert {a.site for a in placed.assignments} <= {"mid", "hub"}
    assert placed.cost.preference_penalty == 0.0
    assert placed.cost.total == pytest.approx(
        placed.cost.compute
        + placed.cost.egress
        + placed.cost.model_distribution
        + placed.cost.energy
    )


def test_cost_per_thousand_requests() -> None:
    result = plan(cost_fleet())
    (placed,) = result.placement.spec.workloads
    requests = 10 * SECONDS
    assert placed.cost_per_1k_requests == pytest.approx(placed.cost.total / (requests / 1000))


def test_cheapest_site_wins_when_all_are_feasible() -> None:
    result = plan(cost_fleet())
    (placed,) = result.placement.spec.workloads
    costs = {name: priced(name).total for name in ("store", "mid", "hub")}
    assert placed.assignments[0].site == min(costs, key=costs.__getitem__)


def job_cost(schedule: dict[str, str] | None) -> CostBreakdown:
    """A 4-core batch job with a 2 h run on the opex hub, with or without a schedule."""
    spec = job("nightly", deadline="6h", runtime="2h", cpu=4, memory="8Gi")
    if schedule is not None:
        spec["spec"]["schedule"] = schedule
    f = fleet(
        image(),
        site(
            "hub",
            tier="regional",
            cpu_hour="0.04/h",
            memory_hour="0.005/h",
            energy_price="0.20/kWh",
            pools=[pool(count=4, cpu=16, memory="64Gi", watts="200W")],
        ),
        spec,
    )
    result = plan(f)
    (placed,) = result.placement.spec.workloads
    return placed.cost


def test_a_job_without_schedule_is_costed_for_the_whole_month() -> None:
    # 4 cores × 0.04 + 8 GiB × 0.005 = 0.20 per hour.
    assert job_cost(None).compute == pytest.approx(0.20 * HOURS)


def test_a_scheduled_job_is_costed_for_the_hours_it_runs() -> None:
    # A 2 h run every 24 h holds its replica 1/12 of the month.
    assert job_cost({"every": "24h"}).compute == pytest.approx(0.20 * HOURS * 2 / 24)


def test_a_scheduled_job_pays_energy_for_the_hours_it_runs_too() -> None:
    always, nightly = job_cost(None), job_cost({"every": "24h"})
    assert always.energy > 0
    assert nightly.energy == pytest.approx(always.energy * 2 / 24)


def test_summed_costs_equal_adding_them_one_by_one() -> None:
    rng = np.random.default_rng(3)
    items = [
        CostBreakdown(
            compute=float(rng.random() * 1e4),
            egress=float(rng.random() * 1e-3),
            model_distribution=float(rng.random()),
            energy=float(rng.random() * 1e6),
            preference_penalty=float(rng.random() * 10),
        )
        for _ in range(200)
    ]
    assert CostBreakdown.summed(items) == sum(items, CostBreakdown())
    assert CostBreakdown.summed([]) == CostBreakdown()


def test_breakdowns_of_a_workload_equal_breakdown_of_each_allocation_to_the_bit() -> None:
    import dataclasses

    from fleetplane.model.synthetic import generate_fleet
    from fleetplane.placement._internal.scoring import breakdowns

    result = plan(generate_fleet(60, 600, 5))
    rng = np.random.default_rng(11)
    many_sources = 0
    for name, allocs in sorted(result.allocations.items()):
        cands = result.candidates[name]
        many_sources += len(cands.view.sources) >= 9  # numpy sums those pairwise in blocks
        assert breakdowns(cands, allocs) == [breakdown(cands, a) for a in allocs], name
        if not cands.view.sources:
            continue
        # Every term non-zero and of mixed magnitudes, so any change of operation or order
        # shows in the last bits: random prices and service times, and random shares.
        rates = cands.rates
        for values in (rates.energy_idle, rates.energy_busy, rates.energy_request, cands.egress,
                       cands.svc_mean):
            values[...] = rng.uniform(0.1, 10.0, values.shape) * 10.0 ** rng.integers(-3, 4)
        cands.concurrency[...] = rng.integers(1, 9, cands.concurrency.shape)
        mixed = [
            dataclasses.replace(a, shares=tuple(rng.uniform(0.0, 1.0, len(a.shares)) * (
                rng.uniform(size=len(a.shares)) > 0.2)))
            for a in allocs
        ]
        assert breakdowns(cands, mixed) == [breakdown(cands, a) for a in mixed], name
    assert many_sources
