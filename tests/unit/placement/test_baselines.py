"""Baselines respect capacity and residency (the engine verifies) and are priced the same way."""

from __future__ import annotations

from fleetplane.model.synthetic import generate_fleet
from fleetplane.placement import plan
from fleetplane.placement._internal.baselines import compare, slo_misses


def test_baselines_run_and_fleetplane_has_no_misses() -> None:
    fleet = generate_fleet(10, 25, seed=3)
    ours = plan(fleet).placement
    assert slo_misses(fleet, ours) == 0
    results = compare(fleet)
    assert [r.name for r in results] == ["cloud-only", "edge-ward", "nearest"]
    for r in results:
        assert r.cost >= 0
        cloud = {n for n, s in fleet.sites.items() if s.spec.tier in ("regional", "hpc")}
        if r.name == "cloud-only":
            assert all(a.site in cloud for w in r.placement.spec.workloads for a in w.assignments)
