"""Properties on random fleets: no plan breaks a hard constraint; plans are deterministic.

Fleets are small and built here (2-6 sites, mixed hardware, zones, power
budgets, lossy links, requests and jobs) so that many shapes are covered
quickly, plus small fleets from the synthetic generator. The check is the
independent one in placement_checker.py.
"""

from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings
from placement_checker import check, without_timing
from placement_fleets import fleet, image, inference, job, link, policy, pool, site, source

from fleetplane.model.fleet import Fleet
from fleetplane.model.synthetic import generate_fleet
from fleetplane.placement import plan

L4 = {"kind": "gpu", "model": "l4", "count": 2, "memory": "24Gi", "watts": "72W"}


@st.composite
def fleets(draw: st.DrawFn) -> Fleet:
    n_sites = draw(st.integers(2, 6))
    docs: list[dict[str, Any]] = [
        image("img", accelerators=("l4",), drivers={"cuda": "12.4"}),
        image("old", drivers={"cuda": "11.8"}, arches=("amd64", "arm64")),
    ]
    names = [f"s{i}" for i in range(n_sites)]
    for name in names:
        pools = [
            pool(
                "cpu",
                count=draw(st.integers(1, 4)),
                cpu=draw(st.sampled_from([2, 4, 8, 16])),
                memory=draw(st.sampled_from(["4Gi", "16Gi", "64Gi"])),
                image=draw(st.sampled_from(["img", "old"])),
                watts=draw(st.sampled_from(["0W", "150W", "400W"])),
                storage=draw(st.sampled_from([[], [{"media": "nvme", "readLatency": "200us"}]])),
            )
        ]
        if draw(st.booleans()):
            pools.append(
                pool("gpu", count=draw(st.integers(1, 3)), cpu=16, memory="64Gi", accelerators=[L4])
            )
        capex = draw(st.booleans())
        docs.append(
            site(
                name,
                tier=draw(st.sampled_from(["edge", "regional", "hpc"])),
                zone=draw(st.sampled_from(["eu", "eu", "us"])),
                region=draw(st.sampled_from(["r1", "r2"])),
                pools=pools,
                capex={"amount": draw(st.integers(1000, 100000)), "amortisationMonths": 36}
                if capex
                else None,
                cpu_hour=f"{draw(st.sampled_from([0.01, 0.04, 0.09]))}/h",
                accelerator_hour={"l4": "0.8/h"},
                energy_price="0.2/kWh" if capex else "0/kWh",
                power_budget=draw(st.sampled_from([None, None, "300W", "2kW"])),
                cordoned=draw(st.integers(0, 9)) == 0,
            )
        )
    # A random spanning tree plus maybe one extra link keeps every site reachable.
    for i in range(1, n_sites):
        j = draw(st.integers(0, i - 1))
        p50 = draw(st.sampled_from([1, 3, 10, 25]))
        docs.append(
            link(
                names[i],
                names[j],
                p50=f"{p50}ms",
                p99=f"{p50 * draw(st.sampled_from([1, 2]))}ms",
                a_to_b=f"{draw(st.sampled_from([0, 0.02]))}/GB",
                loss=draw(st.sampled_from(["0%", "0%", "0.1%"])),
            )
        )
    n_sources = draw(st.integers(1, 4))
    sources = [f"src{i}" for i in range(n_sources)]
    for name in sources:
        docs.append(
            source(
                name,
                draw(st.sampled_from(names)),
                rate=f"{draw(st.sampled_from([1, 20, 200]))}/s",
                size="10KB",
            )
        )
    for k in range(draw(st.integers(1, 6))):
        if draw(st.integers(0, 3)) == 0:
            gpu = draw(st.booleans())
            docs.append(
                job(
                    f"job{k}",
                    cls=draw(st.sampled_from(["batch", "training"])),
                    tasks=draw(st.integers(1, 6)),
                    cpu=draw(st.sampled_from([1, 2, 8])),
                    memory="2Gi",
                    hardware="l4" if gpu else "cpu",
                    accelerator={"kind": "gpu"} if gpu else None,
                    runtime=draw(st.sampled_from(["1h", "5h"])),
                    deadline="4h",
                    sources=draw(st.lists(st.sampled_from(sources), max_size=2, unique=True)),
                    availability=draw(st.sampled_from([None, "99.95%"])),
                )
            )
            continue
        fed = draw(st.lists(st.sampled_from(sources), min_size=1, max_size=n_sources, unique=True))
        profiles = [
            {
                "hardware": "cpu",
                "serviceTime": {
                    "mean": f"{draw(st.sampled_from([2, 8]))}ms",
                    "cv": draw(st.sampled_from([0.0, 0.5, 1.0])),
                },
                "concurrency": draw(st.sampled_from([1, 4])),
            }
        ]
        if draw(st.booleans()):
            profiles.append(
                {
                    "hardware": "l4",
                    "serviceTime": {"mean": "3ms", "cv": 0.3},
                    "concurrency": 8,
                    "power": "20W",
                }
            )
        docs.append(
            inference(
                f"svc{k}",
                fed,
                cls=draw(st.sampled_from(["inference", "streaming", "control"])),
                p99=f"{draw(st.sampled_from([15, 40, 120, 400]))}ms",
                p50=draw(st.sampled_from([None, "30ms"])),
                cpu=draw(st.sampled_from([0.5, 2, 6])),
                memory=draw(st.sampled_from(["512Mi", "8Gi"])),
                profiles=profiles,
                residency=draw(st.sampled_from([[], ["eu"]])),
                runtime=draw(st.sampled_from([{}, {"drivers": {"cuda": ">=12.0"}}])),
                replicas=(draw(st.integers(1, 2)), draw(st.integers(2, 12))),
                availability=draw(st.sampled_from([None, "99%", "99.9%"])),
                storage=draw(st.sampled_from([None, {"reads": 2, "media": ["nvme"]}])),
                model={"artifact": "oci://m", "size": "200MB", "updatesPerDay": 1},
            )
        )
    if draw(st.booleans()):
        rules = [
            {
                "name": "gpu-off-edge",
                "when": "profile.accelerated",
                "prefer": "site.tier != 'edge'",
                "weight": 50,
            },
            {
                "name": "batch-not-hpc",
                "when": "workload.class == 'batch'",
                "require": "site.tier != 'hpc'",
            },
        ]
        docs.append(policy(rules, failure_domain=draw(st.sampled_from(["site", "region"]))))
    return fleet(*docs)


PROPERTY = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(fleets())
def test_no_plan_breaks_a_hard_constraint(f: Fleet) -> None:
    result = plan(f)
    assert check(f, result) == []
    # Every workload without a plan carries a reason.
    assert all(u.reason for u in result.placement.spec.unplaceable)


@PROPERTY
@given(fleets(), st.integers(0, 3))
def test_same_fleet_and_seed_give_the_same_plan(f: Fleet, seed: int) -> None:
    first = without_timing(plan(f, seed=seed).placement.to_document())
    second = without_timing(plan(f, seed=seed).placement.to_document())
    assert first == second


def test_the_strategy_produces_placeable_and_unplaceable_fleets() -> None:
    # Guard against a strategy that only ever yields trivial fleets.
    outcomes: set[bool] = set()

    @settings(max_examples=30, deadline=None, derandomize=True)
    @given(fleets())
    def sample(f: Fleet) -> None:
        outcomes.add(plan(f).complete)

    sample()
    assert outcomes == {True, False}


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31 - 1))
def test_generated_fleets_never_break_a_hard_constraint(seed: int) -> None:
    # The synthetic generator's fleets: regions, hubs, several kinds of edge
    # sites, HPC clusters, zones and a policy, as the benchmark uses them.
    f = generate_fleet(10, 20, seed)
    result = plan(f, seed=seed)
    assert check(f, result) == []
    assert without_timing(plan(f, seed=seed).placement.to_document()) == without_timing(
        result.placement.to_document()
    )
