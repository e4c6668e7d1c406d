"""Small fleets for placement tests, written like manifests (human units, camelCase)."""

from __future__ import annotations

import copy
from typing import Any

from fleetplane.model.fleet import Fleet
from fleetplane.model.kinds import KINDS

Doc = dict[str, Any]


def doc(kind: str, name: str, spec: Doc, labels: dict[str, str] | None = None) -> Doc:
    metadata: Doc = {"name": name}
    if labels:
        metadata["labels"] = labels
    return {"apiVersion": "fleetplane/v1", "kind": kind, "metadata": metadata, "spec": spec}


def fleet(*docs: Doc, name: str = "test") -> Fleet:
    out = Fleet(name=name)
    for d in docs:
        out.add(KINDS[d["kind"]].model_validate(copy.deepcopy(d)))
    return out


def image(
    name: str = "img",
    *,
    arches: tuple[str, ...] = ("amd64",),
    runtime: tuple[str, str] = ("containerd", "1.7.12"),
    drivers: dict[str, str] | None = None,
    accelerators: tuple[str, ...] = (),
) -> Doc:
    return doc(
        "NodeImage",
        name,
        {
            "os": "linux",
            "containerRuntime": {"name": runtime[0], "version": runtime[1]},
            "drivers": drivers or {},
            "arches": list(arches),
            "accelerators": list(accelerators),
        },
    )


def pool(
    name: str = "cpu",
    *,
    count: int = 4,
    cpu: float = 8,
    memory: str = "32Gi",
    image: str = "img",
    arch: str = "amd64",
    accelerators: list[Doc] | None = None,
    storage: list[Doc] | None = None,
    watts: str = "0W",
) -> Doc:
    return {
        "name": name,
        "count": count,
        "cpu": cpu,
        "memory": memory,
        "arch": arch,
        "nodeImage": image,
        "accelerators": accelerators or [],
        "storage": storage or [],
        "watts": watts,
    }


def site(
    name: str,
    *,
    tier: str = "edge",
    region: str = "r1",
    zone: str = "eu",
    pools: list[Doc] | None = None,
    cpu_hour: str = "0.04/h",
    memory_hour: str = "0.005/h",
    accelerator_hour: dict[str, str] | None = None,
    capex: Doc | None = None,
    energy_price: str = "0/kWh",
    power_budget: str | None = None,
    labels: dict[str, str] | None = None,
    cordoned: bool = False,
) -> Doc:
    cost: Doc = {"energyPrice": energy_price}
    if capex is not None:
        cost["capex"] = capex
    else:
        cost["opex"] = {
            "cpuHour": cpu_hour,
            "memoryGibHour": memory_hour,
            "acceleratorHour": accelerator_hour or {},
        }
    spec: Doc = {
        "tier": tier,
        "region": region,
        "residencyZone": zone,
        "nodePools": pools or [pool()],
        "cost": cost,
        "cordoned": cordoned,
    }
    if power_budget is not None:
        spec["powerBudget"] = power_budget
    return doc("Site", name, spec, labels)


def link(
    a: str,
    b: str,
    *,
    p50: str = "10ms",
    p99: str = "10ms",
    a_to_b: str = "0/GB",
    b_to_a: str = "0/GB",
    loss: str = "0%",
) -> Doc:
    return doc(
        "Link",
        f"{a}--{b}",
        {
            "a": a,
            "b": b,
            "latency": {"p50": p50, "p99": p99},
            "bandwidth": "10Gbps",
            "loss": loss,
            "egressPrice": {"aToB": a_to_b, "bToA": b_to_a},
        },
    )


def source(
    name: str, site_name: str, *, rate: str = "10/s", size: str = "0", zone: str | None = None
) -> Doc:
    spec: Doc = {"site": site_name, "requestRate": rate, "requestSize": size}
    if zone is not None:
        spec["residencyZone"] = zone
    return doc("DataSource", name, spec)


def inference(
    name: str,
    sources: list[str],
    *,
    p99: str = "50ms",
    p50: str | None = None,
    profiles: list[Doc] | None = None,
    cpu: float = 1,
    memory: str = "1Gi",
    accelerator: Doc | None = None,
    residency: list[str] | None = None,
    runtime: Doc | None = None,
    replicas: tuple[int, int] = (1, 100),
    availability: str | None = None,
    model: Doc | None = None,
    storage: Doc | None = None,
    cls: str = "inference",
    labels: dict[str, str] | None = None,
) -> Doc:
    latency: Doc = {"p99": p99}
    if p50 is not None:
        latency["p50"] = p50
    slo: Doc = {"latency": latency}
    if availability is not None:
        slo["availability"] = availability
    resources: Doc = {"cpu": cpu, "memory": memory}
    if accelerator is not None:
        resources["accelerator"] = accelerator
    spec: Doc = {
        "class": cls,
        "slo": slo,
        "demand": [{"source": s} for s in sources],
        "resources": resources,
        "profiles": profiles or [{"hardware": "cpu", "serviceTime": {"mean": "5ms", "cv": 1.0}}],
        "residency": residency or [],
        "runtime": runtime or {},
        "replicas": {"min": replicas[0], "max": replicas[1]},
    }
    if model is not None:
        spec["model"] = model
    if storage is not None:
        spec["storage"] = storage
    return doc("Workload", name, spec, labels)


def job(
    name: str,
    *,
    deadline: str = "6h",
    runtime: str = "1h",
    hardware: str = "cpu",
    cpu: float = 4,
    memory: str = "8Gi",
    tasks: int = 1,
    accelerator: Doc | None = None,
    cls: str = "batch",
    sources: list[str] | None = None,
    residency: list[str] | None = None,
    availability: str | None = None,
) -> Doc:
    resources: Doc = {"cpu": cpu, "memory": memory}
    if accelerator is not None:
        resources["accelerator"] = accelerator
    slo: Doc = {"deadline": deadline}
    if availability is not None:
        slo["availability"] = availability
    return doc(
        "Workload",
        name,
        {
            "class": cls,
            "slo": slo,
            "demand": [{"source": s} for s in sources or []],
            "resources": resources,
            "profiles": [{"hardware": hardware, "runtime": runtime}],
            "residency": residency or [],
            "replicas": {"min": tasks, "max": tasks},
        },
    )


def policy(
    rules: list[Doc] | None = None, *, failure_domain: str = "site", **objective: float
) -> Doc:
    spec: Doc = {"rules": rules or [], "failureDomain": failure_domain}
    if objective:
        spec["objective"] = objective
    return doc("PlacementPolicy", "test-policy", spec)
