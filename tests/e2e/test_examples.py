"""The shipped example fleets: valid, with the shape the issue asks for, and fully placeable."""

from __future__ import annotations

from pathlib import Path

import cel
import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from fleetplane.model.fleet import Fleet
from fleetplane.model.loader import load_fleet
from fleetplane.model.workload import JOB_CLASSES, REQUEST_CLASSES

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
NAMES = ("retail-edge", "factory", "telco-mec", "hybrid-hpc")


@pytest.fixture(scope="module", params=NAMES)
def example(request: pytest.FixtureRequest) -> tuple[str, Fleet]:
    name: str = request.param
    return name, load_fleet(EXAMPLES / name)


def _load(name: str) -> Fleet:
    return load_fleet(EXAMPLES / name)


def _accelerators(fleet: Fleet, tier: str | None = None) -> set[tuple[str, str]]:
    return {
        (acc.kind, acc.model)
        for site in fleet.sites.values()
        if tier is None or site.spec.tier == tier
        for pool in site.spec.node_pools
        for acc in pool.accelerators
    }


# ------------------------------------------------------------------ every example


def test_every_example_has_a_readme_and_a_policy(example: tuple[str, Fleet]) -> None:
    name, fleet = example
    readme = (EXAMPLES / name / "README.md").read_text(encoding="utf-8")
    assert "Where the numbers come from" in readme
    assert fleet.policy is not None
    for rule in fleet.policy.spec.rules:
        for expression in (rule.when, rule.require, rule.prefer):
            if expression is not None:
                cel.compile(expression)


def test_every_example_has_driver_requirements(example: tuple[str, Fleet]) -> None:
    _, fleet = example
    assert any(w.spec.runtime.drivers for w in fleet.workloads.values())


@pytest.mark.parametrize("name", ["retail-edge", "hybrid-hpc"])
def test_an_old_driver_keeps_a_workload_off_matching_hardware(name: str) -> None:
    """A pool whose accelerator a workload could use, but whose image's CUDA is too old."""
    fleet = _load(name)
    found = []
    for workload in fleet.workloads.values():
        wanted = workload.spec.runtime.drivers.get("cuda")
        if wanted is None:
            continue
        models = {p.hardware for p in workload.spec.profiles}
        for site in fleet.sites.values():
            for pool in site.spec.node_pools:
                image = fleet.node_images[pool.node_image].spec
                usable = {a.model for a in pool.accelerators} & models
                cuda = image.drivers.get("cuda")
                if usable and cuda is not None and Version(cuda) not in SpecifierSet(wanted):
                    found.append((workload.name, site.name, pool.name))
    assert found


def test_every_site_is_linked(example: tuple[str, Fleet]) -> None:
    _, fleet = example
    neighbours: dict[str, set[str]] = {name: set() for name in fleet.sites}
    for link in fleet.links.values():
        neighbours[link.spec.a].add(link.spec.b)
        neighbours[link.spec.b].add(link.spec.a)
    start = next(iter(fleet.sites))
    seen, frontier = {start}, [start]
    while frontier:
        for other in neighbours[frontier.pop()] - seen:
            seen.add(other)
            frontier.append(other)
    assert seen == set(fleet.sites)


def test_every_example_is_placed_completely(example: tuple[str, Fleet]) -> None:
    placement = pytest.importorskip("fleetplane.placement")
    _, fleet = example
    result = placement.plan(fleet)
    spec = result.placement.spec
    assert [u.workload for u in spec.unplaceable] == []
    assert result.complete
    assert {w.workload for w in spec.workloads} == set(fleet.workloads)
    for planned in spec.workloads:
        if planned.slo_p99 is not None and planned.predicted.p99 is not None:
            assert planned.predicted.p99 <= planned.slo_p99
        if planned.workload_class in JOB_CLASSES:
            deadline = fleet.workloads[planned.workload].spec.slo.deadline
            assert planned.completion_time is not None and deadline is not None
            assert planned.completion_time <= deadline


# ------------------------------------------------------------------ what each one is about


def test_retail_edge_is_a_multi_region_store_fleet() -> None:
    fleet = _load("retail-edge")
    stores = [s for s in fleet.sites.values() if s.spec.tier == "edge"]
    assert len(stores) >= 40
    assert len({s.spec.region for s in fleet.sites.values()}) >= 3
    assert {"eu", "us"} <= {s.spec.residency_zone for s in fleet.sites.values()}
    assert all(s.spec.cost.capex is not None for s in stores)
    assert all(s.spec.cost.opex is not None for s in fleet.sites.values() if s not in stores)
    accelerated = [s for s in stores if any(p.accelerators for p in s.spec.node_pools)]
    assert 0 < len(accelerated) < len(stores)
    classes = {w.spec.class_ for w in fleet.workloads.values()}
    assert classes == {"inference", "streaming", "batch", "training", "control"}
    with_sources = {d.spec.site for d in fleet.data_sources.values()}
    assert {s.name for s in stores} <= with_sources
    vision = [w for w in fleet.workloads.values() if w.name.startswith("shelf-vision")]
    assert vision
    for workload in vision:
        assert workload.spec.slo.latency is not None
        assert workload.spec.slo.latency.p99 == pytest.approx(0.050)


def test_factory_mixes_accelerator_families_under_power_budgets() -> None:
    fleet = _load("factory")
    kinds = {kind for kind, _ in _accelerators(fleet, "edge")}
    models = {model for _, model in _accelerators(fleet, "edge")}
    assert {"gpu", "npu", "fpga"} <= kinds
    assert {"hailo-8", "alveo-u50"} <= models
    assert any(model.startswith("orin") for model in models)
    plants = [s for s in fleet.sites.values() if s.spec.tier == "edge"]
    assert len(plants) >= 3
    assert all(s.spec.power_budget for s in plants)
    inspection = [w for w in fleet.workloads.values() if w.name.startswith("quality-inspection")]
    assert len(inspection) == len(plants)
    for workload in inspection:
        assert workload.spec.slo.latency is not None
        assert workload.spec.slo.latency.p99 is not None
        assert workload.spec.slo.latency.p99 <= 0.020


def test_telco_mec_has_10ms_budgets_and_egress_heavy_video() -> None:
    fleet = _load("telco-mec")
    tiers = {s.spec.tier for s in fleet.sites.values()}
    assert tiers == {"edge", "regional"}
    budgets = [
        min(seconds for _, seconds in w.spec.slo.latency.targets())
        for w in fleet.workloads.values()
        if w.spec.class_ in REQUEST_CLASSES and w.spec.slo.latency is not None
    ]
    assert sum(1 for b in budgets if b <= 0.010) >= 3
    video = [d for d in fleet.data_sources.values() if d.metadata.labels.get("stream") == "video"]
    assert video
    assert all(d.spec.bytes_per_second >= 25e6 for d in video)  # >= 200 Mbps each
    to_region = [link for link in fleet.links.values() if link.spec.b == "cloud-eu-central"]
    assert to_region
    assert all(link.spec.egress_price.a_to_b > 0 for link in to_region)


def test_hybrid_hpc_bursts_capex_hpc_to_opex_cloud() -> None:
    fleet = _load("hybrid-hpc")
    hpc = [s for s in fleet.sites.values() if s.spec.tier == "hpc"]
    clouds = [s for s in fleet.sites.values() if s.spec.tier == "regional"]
    assert len(hpc) == 1
    assert hpc[0].spec.cost.capex is not None
    assert clouds
    assert all(s.spec.cost.opex is not None for s in clouds)
    classes = {w.spec.class_ for w in fleet.workloads.values()}
    assert classes == {"training", "batch"}
    assert all(w.spec.slo.deadline for w in fleet.workloads.values())
