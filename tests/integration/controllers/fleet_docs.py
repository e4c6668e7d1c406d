"""Manifests and a small deterministic planner for controller tests.

The planner stands in for the placement engine so these tests exercise the
controllers' own promises (pins, Lost, cordon, revisions), not the solver:
each workload gets one replica on the first site, by name, that is neither
cordoned nor draining.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fleetplane.model.fleet import Fleet
from fleetplane.model.placement import (
    Assignment,
    CostBreakdown,
    Placement,
    PlacementSpec,
    SolverInfo,
    Unplaceable,
    WorkloadPlacement,
)

IMAGE = """\
apiVersion: fleetplane/v1
kind: NodeImage
metadata: {name: ubuntu}
spec:
  os: ubuntu-22.04
  containerRuntime: {name: containerd, version: "1.7"}
  arches: [amd64]
"""

SITE = """\
apiVersion: fleetplane/v1
kind: Site
metadata: {{name: {name}}}
spec:
  tier: edge
  region: eu-west
  residencyZone: eu
  nodePools:
    - {{name: cpu, count: 2, cpu: 8, memory: 32Gi, nodeImage: ubuntu}}
  cost:
    opex: {{cpuHour: 0.04/h}}
"""

WORKLOAD = """\
apiVersion: fleetplane/v1
kind: Workload
metadata: {{name: {name}}}
spec:
  class: batch
  slo: {{deadline: 6h}}
  resources: {{cpu: {cpu}, memory: 1Gi}}
  profiles:
    - {{hardware: cpu, runtime: 1h}}
  env: {{GREETING: {greeting}}}
"""


def site(name: str) -> str:
    return SITE.format(name=name)


def workload(name: str, cpu: int = 1, greeting: str = "hello") -> str:
    return WORKLOAD.format(name=name, cpu=cpu, greeting=greeting)


def documents(*texts: str) -> str:
    return "---\n".join((IMAGE, *texts))


def first_fit(fleet: Fleet, current: Placement | None) -> Placement:
    usable = sorted(
        name for name, s in fleet.sites.items() if not (s.spec.cordoned or s.spec.draining)
    )
    placed, unplaceable = [], []
    for name, item in fleet.workloads.items():
        if not usable:
            unplaceable.append(Unplaceable(workload=name, reason="no usable site"))
            continue
        site_name = usable[0]
        placed.append(
            WorkloadPlacement(
                workload=name,
                workload_class=item.spec.class_,
                assignments=[Assignment(site=site_name, pool="cpu", profile="cpu", replicas=1)],
                cost=CostBreakdown(compute=float(item.spec.resources.cpu)),
            )
        )
    total = CostBreakdown(compute=sum(p.cost.compute for p in placed))
    spec = PlacementSpec(
        workloads=placed,
        unplaceable=unplaceable,
        cost=total,
        solver=SolverInfo(name="first-fit", version="test", seed=0),
    )
    return Placement.model_validate(
        {"metadata": {"name": "fleet"}, "spec": spec.model_dump(by_alias=True)}
    )


def wait_for(probe: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or probe}")
        time.sleep(0.05)  # polling a condition, not waiting out a race
