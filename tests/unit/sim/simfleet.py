"""Small fleets, placements and scenarios built in code for the simulator's tests."""

from __future__ import annotations

from typing import Any

from fleetplane.model.fleet import Fleet
from fleetplane.model.infrastructure import DataSource, Link, NodeImage, Site
from fleetplane.model.placement import Placement
from fleetplane.model.scenario import Scenario
from fleetplane.model.workload import Workload


def _meta(name: str) -> dict[str, Any]:
    return {"apiVersion": "fleetplane/v1", "metadata": {"name": name}}


def site(name: str, zone: str = "eu", tier: str = "edge", nodes: int = 4) -> Site:
    return Site.model_validate(
        {
            **_meta(name),
            "kind": "Site",
            "spec": {
                "tier": tier,
                "region": "r1",
                "residencyZone": zone,
                "nodePools": [
                    {
                        "name": "cpu",
                        "count": nodes,
                        "cpu": 16,
                        "memory": "64Gi",
                        "nodeImage": "img",
                        "storage": [{"media": "nvme", "readLatency": "100us"}],
                    }
                ],
                "cost": {"opex": {"cpuHour": "0.04/h"}},
            },
        }
    )


def link(
    name: str, a: str, b: str, p50: str = "10ms", p99: str = "20ms", loss: float = 0.0
) -> Link:
    return Link.model_validate(
        {
            **_meta(name),
            "kind": "Link",
            "spec": {
                "a": a,
                "b": b,
                "latency": {"p50": p50, "p99": p99},
                "bandwidth": "1Gbps",
                "loss": loss,
                "egressPrice": {"aToB": "0.09/GB", "bToA": "0.02/GB"},
            },
        }
    )


def source(name: str, site_name: str, rate: float, size: str = "10k") -> DataSource:
    return DataSource.model_validate(
        {
            **_meta(name),
            "kind": "DataSource",
            "spec": {"site": site_name, "requestRate": f"{rate}/s", "requestSize": size},
        }
    )


def workload(
    name: str,
    sources: list[str],
    mean: str = "10ms",
    cv: float = 1.0,
    concurrency: int = 1,
    p99: str = "100ms",
    reads: int = 0,
) -> Workload:
    return Workload.model_validate(
        {
            **_meta(name),
            "kind": "Workload",
            "spec": {
                "class": "inference",
                "slo": {"latency": {"p99": p99}},
                "demand": [{"source": s} for s in sources],
                "resources": {"cpu": 1, "memory": "1Gi"},
                "profiles": [
                    {
                        "hardware": "cpu",
                        "serviceTime": {"mean": mean, "cv": cv},
                        "concurrency": concurrency,
                    }
                ],
                "storage": {"reads": reads},
            },
        }
    )


def placement(workloads: dict[str, list[dict[str, Any]]], p99: float | None = None) -> Placement:
    return Placement.model_validate(
        {
            **_meta("plan"),
            "kind": "Placement",
            "spec": {
                "workloads": [
                    {
                        "workload": name,
                        "workloadClass": "inference",
                        "assignments": [
                            {"pool": "cpu", "profile": "cpu", **a} for a in assignments
                        ],
                        "predicted": {"p99": p99} if p99 is not None else {},
                        "cost": {"compute": 100.0},
                    }
                    for name, assignments in workloads.items()
                ],
                "solver": {"name": "test", "version": "0", "seed": 0},
            },
        }
    )


def scenario(**spec: Any) -> Scenario:
    spec.setdefault("duration", "1h")
    return Scenario.model_validate({**_meta("scn"), "kind": "Scenario", "spec": spec})


def node_image() -> NodeImage:
    return NodeImage.model_validate(
        {
            **_meta("img"),
            "kind": "NodeImage",
            "spec": {
                "os": "linux",
                "containerRuntime": {"name": "containerd", "version": "1.7"},
                "arches": ["amd64"],
            },
        }
    )


def fleet(*resources: Any) -> Fleet:
    out = Fleet(name="test")
    out.add(node_image())
    for resource in resources:
        out.add(resource)
    return out


def single_queue(
    rho: float,
    servers: int = 1,
    mean: str = "10ms",
    cv: float = 1.0,
) -> Fleet:
    """One site, one source at that site, one assignment: an M/G/c queue at utilisation rho."""
    mean_s = float(mean.removesuffix("ms")) / 1000.0
    rate = rho * servers / mean_s
    return fleet(
        site("s1"),
        source("cam", "s1", rate),
        workload("w", ["cam"], mean=mean, cv=cv, concurrency=servers),
    )


def single_placement(replicas: int = 1) -> Placement:
    return placement({"w": [{"site": "s1", "replicas": replicas, "sources": {"cam": 1.0}}]})


def failover_fleet(rate: float = 100.0, loss: float = 0.0, servers: int = 4) -> Fleet:
    """Source at site a; replicas at b (10 ms away) and c (20 ms away), all in one zone."""
    return fleet(
        site("a"),
        site("b", tier="regional"),
        site("c", tier="regional"),
        link("a-b", "a", "b", "10ms", "20ms", loss=loss),
        link("a-c", "a", "c", "20ms", "40ms"),
        source("cam", "a", rate, size="100k"),
        workload("w", ["cam"], concurrency=servers, p99="200ms"),
    )


def failover_placement(backup: bool = True, shares: tuple[float, float] = (1.0, 0.0)) -> Placement:
    """``w`` on b (and on c when ``backup``); c gets no traffic unless its share is > 0."""
    assignments: list[dict[str, Any]] = [
        {"site": "b", "replicas": 1, "sources": {"cam": shares[0]} if shares[0] else {}}
    ]
    if backup:
        assignments.append(
            {"site": "c", "replicas": 1, "sources": {"cam": shares[1]} if shares[1] else {}}
        )
    return placement({"w": assignments})


def assert_little(result: Any, tolerance: float = 0.02) -> None:
    """Little's law L = λW holds in every replication."""
    assert result.littles_law, "no replication reported Little's law"
    for run in result.littles_law:
        assert run.relative_error < tolerance, run


def assert_conserved(result: Any) -> None:
    """Every request has exactly one outcome, per workload and in total."""
    for outcomes in [result.outcomes, *(w.outcomes for w in result.workloads)]:
        parts = outcomes.ok + outcomes.late + outcomes.lost + outcomes.expired + outcomes.dropped
        assert outcomes.requests == parts, outcomes
