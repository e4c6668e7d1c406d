"""The greedy solver: spreading, demand splitting, capacity, jobs, reporting, determinism."""

from __future__ import annotations

import pytest
from placement_checker import without_timing
from placement_fleets import fleet, image, inference, job, link, policy, pool, site, source

from fleetplane.errors import PlacementError
from fleetplane.model.fleet import Fleet
from fleetplane.model.policy import Rule
from fleetplane.placement import plan
from fleetplane.placement._internal.candidates import Allocation, Candidates
from fleetplane.placement._internal.context import PlanContext
from fleetplane.placement._internal.pipeline import choose_policy
from fleetplane.placement._internal.rules import compile_policy
from fleetplane.placement._internal.verify import verify

SERVICE = [{"hardware": "cpu", "serviceTime": {"mean": "10ms", "cv": 1.0}}]


def by_site(result_fleet: Fleet, workload: str = "w") -> dict[str, int]:
    result = plan(result_fleet)
    (item,) = [w for w in result.placement.spec.workloads if w.workload == workload]
    return {a.site: a.replicas for a in item.assignments}


def three_sites(availability: str | None, domain: str = "site", rate: str = "300/s") -> Fleet:
    return fleet(
        image(),
        site("a", region="north", labels={"rack": "1"}),
        site("b", region="north", labels={"rack": "1"}, cpu_hour="0.05/h"),
        site("c", region="south", labels={"rack": "2"}, cpu_hour="0.09/h"),
        link("a", "b", p50="1ms", p99="1ms"),
        link("b", "c", p50="1ms", p99="1ms"),
        source("src", "a", rate=rate),
        inference("w", ["src"], p99="100ms", profiles=SERVICE, availability=availability),
        policy(failure_domain=domain),
    )


def test_high_availability_spreads_over_two_domains_each_sized_for_all_of_it() -> None:
    alone = by_site(three_sites(None))
    spread = by_site(three_sites("99.9%"))
    assert list(alone) == ["a"]
    assert set(spread) == {"a", "b"}
    # Losing either site must still serve the peak: each side has what one site needed.
    assert all(n >= alone["a"] for n in spread.values())
    result = plan(three_sites("99.9%"))
    (item,) = result.placement.spec.workloads
    assert item.failure_domains == ["a", "b"]
    assert all(a.sources == {"src": 0.5} for a in item.assignments)


def test_lower_availability_does_not_spread() -> None:
    assert set(by_site(three_sites("99.5%"))) == {"a"}


def test_failure_domain_can_be_a_label_or_the_region() -> None:
    assert set(by_site(three_sites("99.9%", domain="rack"))) == {"a", "c"}
    assert set(by_site(three_sites("99.9%", domain="region"))) == {"a", "c"}


def test_spread_is_impossible_with_one_domain() -> None:
    f = three_sites("99.9%")
    f.sites["b"].spec.cordoned = True
    f.sites["c"].spec.cordoned = True
    result = plan(f)
    (missing,) = result.placement.spec.unplaceable
    assert "needs two failure domains" in missing.reason
    assert "site(s) passing every filter: a" in missing.reason


def stores_fleet(n: int, hub_latency: str, near: int | None = None) -> Fleet:
    """``n`` stores each with its own box and camera feed, and a hub that is cheaper per request."""
    near = n if near is None else near
    docs: list[dict[str, object]] = [
        image(),
        site("hub", tier="regional", cpu_hour="0.02/h", memory_hour="0/h", pools=[pool(count=40)]),
    ]
    for i in range(n):
        name = f"store-{i:02d}"
        docs.append(site(name, cpu_hour="0.10/h", memory_hour="0/h", pools=[pool(count=1)]))
        latency = "2ms" if i < near else hub_latency
        docs.append(link(name, "hub", p50=latency, p99=latency))
        docs.append(source(f"cams-{i:02d}", name, rate="20/s"))
    docs.append(
        inference(
            "w",
            [f"cams-{i:02d}" for i in range(n)],
            p99="80ms",
            profiles=SERVICE,
            model={"artifact": "oci://m", "size": "100MB", "updatesPerDay": 1},
        )
    )
    return fleet(*docs)


def test_forty_stores_go_to_the_hub_when_it_is_cheaper_and_close() -> None:
    placed = by_site(stores_fleet(40, "2ms"))
    assert list(placed) == ["hub"]


def test_forty_stores_stay_local_when_the_hub_is_too_far() -> None:
    placed = by_site(stores_fleet(40, "30ms", near=0))
    assert set(placed) == {f"store-{i:02d}" for i in range(40)}
    assert set(placed.values()) == {1}


def test_stores_near_the_hub_use_it_and_the_rest_stay_local() -> None:
    result = plan(stores_fleet(10, "30ms", near=6))
    (item,) = result.placement.spec.workloads
    served = {a.site: sorted(a.sources) for a in item.assignments}
    assert served["hub"] == [f"cams-{i:02d}" for i in range(6)]
    assert {s for s in served if s != "hub"} == {f"store-{i:02d}" for i in range(6, 10)}
    # Every source's traffic is routed somewhere, exactly once.
    routed: dict[str, float] = {}
    for a in item.assignments:
        for src, share in a.sources.items():
            routed[src] = routed.get(src, 0.0) + share
    assert routed == {f"cams-{i:02d}": 1.0 for i in range(10)}


def test_capacity_is_shared_between_workloads() -> None:
    # The cheap site fits one 6-core replica; the second workload must go elsewhere.
    f = fleet(
        image(),
        site("cheap", pools=[pool(count=1, cpu=8)], cpu_hour="0.01/h"),
        site("dear", pools=[pool(count=4, cpu=8)], cpu_hour="0.10/h"),
        link("cheap", "dear", p50="1ms", p99="1ms"),
        source("s1", "cheap", rate="1/s"),
        source("s2", "cheap", rate="1/s"),
        inference("w1", ["s1"], p99="1s", cpu=6, profiles=SERVICE),
        inference("w2", ["s2"], p99="1s", cpu=6, profiles=SERVICE),
    )
    result = plan(f)
    sites = sorted(a.site for w in result.placement.spec.workloads for a in w.assignments)
    assert sites == ["cheap", "dear"]


def test_regret_gives_scarce_capacity_to_the_workload_that_loses_most_without_it() -> None:
    # Both want the only GPU site slot... w-flexible can also run on CPUs elsewhere
    # for a little more, w-gpu-only cannot run anywhere else at all.
    gpu = {"kind": "gpu", "model": "l4", "count": 1, "memory": "24Gi"}
    f = fleet(
        image("img", accelerators=("l4",)),
        site(
            "g", pools=[pool("gpu", count=1, accelerators=[gpu])], accelerator_hour={"l4": "0.1/h"}
        ),
        site("c", pools=[pool(count=4)]),
        link("g", "c", p50="1ms", p99="1ms"),
        source("s", "g", rate="1/s"),
        inference(
            "a-flexible",
            ["s"],
            p99="1s",
            profiles=[
                {"hardware": "l4", "serviceTime": {"mean": "2ms"}},
                {"hardware": "cpu", "serviceTime": {"mean": "10ms"}},
            ],
        ),
        inference(
            "b-gpu-only",
            ["s"],
            p99="1s",
            accelerator={"kind": "gpu"},
            profiles=[{"hardware": "l4", "serviceTime": {"mean": "2ms"}}],
        ),
    )
    result = plan(f)
    assert result.complete
    where = {
        w.workload: (w.assignments[0].site, w.assignments[0].profile)
        for w in result.placement.spec.workloads
    }
    assert where == {"a-flexible": ("c", "cpu"), "b-gpu-only": ("g", "l4")}


def test_jobs_fill_the_cheapest_site_and_overflow() -> None:
    f = fleet(
        image(),
        site(
            "campus", pools=[pool(count=3, cpu=8)], capex={"amount": 1000, "amortisationMonths": 10}
        ),
        site("cloud", tier="regional", pools=[pool(count=20, cpu=8)], cpu_hour="0.05/h"),
        job("sweep", tasks=10, cpu=4),
    )
    placed = by_site(f, "sweep")
    assert placed == {"campus": 6, "cloud": 4}


def test_replicas_are_packed_per_node_not_per_pool() -> None:
    # 3 nodes × 8 GPUs = 24 GPUs, but a 5-GPU task fits once per node: 3 tasks, not 4.
    gpus = {"kind": "gpu", "model": "a100", "count": 8, "memory": "80Gi"}
    f = fleet(
        image("img", accelerators=("a100",)),
        site(
            "campus",
            pools=[pool("gpu", count=3, cpu=64, memory="512Gi", accelerators=[gpus])],
            accelerator_hour={"a100": "1/h"},
        ),
        site(
            "cloud",
            tier="regional",
            pools=[pool("gpu", count=3, cpu=64, memory="512Gi", accelerators=[gpus])],
            accelerator_hour={"a100": "3/h"},
        ),
        job(
            "train",
            cls="training",
            tasks=4,
            hardware="a100",
            accelerator={"kind": "gpu", "count": 5},
            deadline="48h",
        ),
    )
    assert by_site(f, "train") == {"campus": 3, "cloud": 1}


def test_power_budget_is_shared_by_all_replicas_on_a_site() -> None:
    f = fleet(
        image(),
        site(
            "small",
            pools=[pool(count=10, cpu=8, watts="400W")],
            power_budget="500W",
            cpu_hour="0.01/h",
        ),
        site("big", pools=[pool(count=10, cpu=8, watts="400W")], cpu_hour="0.05/h"),
        job("tasks", tasks=4, cpu=4),
    )
    # Each task is half a 400 W node: 200 W, so the 500 W site holds two.
    assert by_site(f, "tasks") == {"small": 2, "big": 2}


def test_unplaceable_workloads_are_reported_with_counts_and_closest_miss() -> None:
    docs: list[dict[str, object]] = [image(), site("hub", tier="regional")]
    for i in range(5):
        docs += [
            site(f"store-{i}", cordoned=i == 0),
            link(f"store-{i}", "hub", p50="20ms", p99="25ms"),
        ]
    docs += [
        site("far", zone="us"),
        link("far", "hub", p50="1ms", p99="1ms"),
        source("cams", "hub", rate="1/s"),
        inference(
            "w",
            ["cams"],
            p99="30ms",
            profiles=[{"hardware": "cpu", "serviceTime": {"mean": "5ms", "cv": 0}}],
        ),
        inference("ok", ["cams"], p99="1s", profiles=SERVICE),
    ]
    f = fleet(*docs)
    f.sites["hub"].spec.cordoned = True
    result = plan(f)
    assert [w.workload for w in result.placement.spec.workloads] == [
        "ok"
    ] or not result.placement.spec.workloads
    missing = {u.workload: u for u in result.placement.spec.unplaceable}
    item = missing["w"]
    counts = {r.constraint: r.sites for r in item.rejections}
    assert counts == {"site cordoned or draining": 2, "data residency": 1, "latency SLO": 4}
    assert item.closest_miss is not None
    assert item.closest_miss.startswith("store-")
    assert "> 30ms SLO from cams" in item.closest_miss
    # Nothing is dropped silently: every workload is placed or reported.
    names = {w.workload for w in result.placement.spec.workloads} | set(missing)
    assert names == {"w", "ok"}


def test_same_inputs_and_seed_give_the_same_document_whatever_the_file_order() -> None:
    f = stores_fleet(8, "30ms", near=4)
    first = without_timing(plan(f, seed=3).placement.to_document())
    reordered = Fleet(name=f.name)
    for resource in reversed(list(f.resources())):
        reordered.add(resource)
    assert without_timing(plan(reordered, seed=3).placement.to_document()) == first
    solver = first["spec"]["solver"]  # type: ignore[index]
    assert (solver["name"], solver["seed"]) == ("greedy", 3)
    assert solver["version"]


def test_verification_refuses_a_plan_that_breaks_a_hard_constraint() -> None:
    f = three_sites(None)
    result = plan(f)
    ctx = PlanContext.build(f, compile_policy(choose_policy(f, None)))
    (alloc,) = result.allocations["w"]
    too_few = Allocation(
        alloc.candidate, 1, alloc.shares, alloc.design_shares, ((0, 1),), alloc.weight
    )
    with pytest.raises(PlacementError, match=r"breaks .* hard constraint"):
        verify(ctx, result.candidates, {"w": [too_few]})
    overpacked = Allocation(
        alloc.candidate,
        alloc.replicas + 100,
        alloc.shares,
        alloc.design_shares,
        ((0, alloc.replicas + 100),),
        alloc.weight,
    )
    with pytest.raises(PlacementError, match="node 0 is over its cpu"):
        verify(ctx, result.candidates, {"w": [overpacked]})


def test_verification_reports_each_allocation_of_a_workload_on_its_own_pool() -> None:
    f = three_sites("99.9%")
    result = plan(f)
    ctx = PlanContext.build(f, compile_policy(choose_policy(f, None)))
    first, second = result.allocations["w"]
    cands = result.candidates["w"]
    too_many = 10**6
    broken = Allocation(
        second.candidate,
        too_many,
        second.shares,
        second.design_shares,
        ((0, too_many),),
        second.weight,
    )
    verify(ctx, result.candidates, {"w": [first, second]})
    with pytest.raises(PlacementError) as raised:
        verify(ctx, result.candidates, {"w": [first, broken]})
    lines = [line for line in str(raised.value).splitlines() if "replicas outside" in line]
    label = ctx.index.row_label(int(cands.row[second.candidate]))
    other = ctx.index.row_label(int(cands.row[first.candidate]))
    assert len(lines) == 1
    assert label in lines[0] and other not in lines[0]


def _verification_lines(
    f: Fleet, allocations: dict[str, list[Allocation]], cands: dict[str, Candidates]
) -> list[str]:
    ctx = PlanContext.build(f, compile_policy(choose_policy(f, None)))
    with pytest.raises(PlacementError) as raised:
        verify(ctx, cands, allocations)
    return str(raised.value).splitlines()


def test_verification_names_the_allocation_a_filter_or_a_require_rule_fails() -> None:
    f = three_sites("99.9%")
    result = plan(f)
    cands = result.candidates["w"]
    index = PlanContext.build(f, compile_policy(choose_policy(f, None))).index
    label = {}
    for alloc in result.allocations["w"]:
        row = int(cands.row[alloc.candidate])
        label[index.site_of_row(row).name] = index.row_label(row)
        # One profile: both allocations are checked together, each reported on its own.
        assert int(cands.profile[alloc.candidate]) == 0
    assert set(label) == {"a", "b"}

    # The same allocations checked against a fleet where site b's nodes are too small ...
    shrunk = three_sites("99.9%")
    shrunk.sites["b"].spec.node_pools[0].cpu = 0.01
    lines = _verification_lines(shrunk, result.allocations, result.candidates)
    failing = [line for line in lines if "fails the" in line]
    assert failing == [f"  workload w at {label['b']} (cpu): fails the capacity filter"]

    # ... and against a policy whose require rule rules either site out.
    for out, kept in (("a", "b"), ("b", "a")):
        ruled = three_sites("99.9%")
        ruled.policies["test-policy"].spec.rules = [
            Rule(name=f"not-{out}", require=f"site.name != '{out}'")
        ]
        lines = _verification_lines(ruled, result.allocations, result.candidates)
        refused = [line for line in lines if "require rule" in line]
        assert len(refused) == 1 and label[out] in refused[0] and label[kept] not in refused[0]
