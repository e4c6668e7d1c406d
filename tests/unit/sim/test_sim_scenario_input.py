"""Bad scenario input: a clear error naming file:line and the field, and nothing runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from fleetplane.errors import ValidationError
from fleetplane.model.loader import read_fleet
from fleetplane.sim import simulate

FLEET = """\
apiVersion: fleetplane/v1
kind: NodeImage
metadata: {name: img}
spec:
  os: linux
  containerRuntime: {name: containerd, version: "1.7"}
  arches: [amd64]
---
apiVersion: fleetplane/v1
kind: Site
metadata: {name: s1}
spec:
  tier: edge
  region: r1
  residencyZone: eu
  nodePools:
    - {name: cpu, count: 2, cpu: 8, memory: 32Gi, nodeImage: img}
  cost: {opex: {cpuHour: 0.04/h}}
---
apiVersion: fleetplane/v1
kind: DataSource
metadata: {name: cam}
spec: {site: s1, requestRate: 50/s}
---
apiVersion: fleetplane/v1
kind: Workload
metadata: {name: w}
spec:
  class: inference
  slo: {latency: {p99: 100ms}}
  demand: [{source: cam}]
  resources: {cpu: 1, memory: 1Gi}
  profiles: [{hardware: cpu, serviceTime: {mean: 10ms, cv: 1}}]
---
apiVersion: fleetplane/v1
kind: Placement
metadata: {name: plan}
spec:
  solver: {name: test, version: "0", seed: 0}
  workloads:
    - workload: w
      workloadClass: inference
      assignments: [{site: s1, pool: cpu, profile: cpu, replicas: 1, sources: {cam: 1}}]
"""


def load(tmp_path: Path, scenario: str) -> tuple[object, Path]:
    (tmp_path / "fleet.yaml").write_text(FLEET, encoding="utf-8")
    path = tmp_path / "scenario.yaml"
    path.write_text(textwrap.dedent(scenario), encoding="utf-8")
    return read_fleet(tmp_path), path


def problems(tmp_path: Path, scenario: str) -> list[str]:
    result, _ = load(tmp_path, scenario)
    return [str(p) for p in result.problems]  # type: ignore[attr-defined]


HEADER = """\
apiVersion: fleetplane/v1
kind: Scenario
metadata: {name: s}
spec:
  duration: 10m
"""


def test_a_field_error_points_at_its_line_and_column(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        HEADER
        + """\
  faults:
    - type: linkDegraded
      link: nowhere
      at: 1m
      duration: 1m
      latencyFactor: 0.5
""",
    )
    assert any(
        "scenario.yaml:11:22 spec.faults[0].latencyFactor" in p
        and "greater than or equal to 1" in p
        for p in found
    ), found


@pytest.mark.parametrize(
    ("body", "line", "message"),
    [
        (
            "  faults:\n    - {type: partition, site: s1, peer: s1, at: 1m, duration: 1m}\n",
            7,
            "a partition needs two different sites",
        ),
        (
            "  faults:\n    - {type: siteDown, site: s1, link: l, at: 1m, duration: 1m}\n",
            7,
            "a siteDown fault does not take link",
        ),
        ("  warmup: 10m\n", 4, "warmup must be shorter than duration"),
        (
            "  traffic:\n    - {source: cam, pattern: poisson, diurnal: [1]}\n",
            7,
            "diurnal multipliers need pattern: diurnal",
        ),
        ("  traffic:\n    - {source: camm}\n", 7, "unknown DataSource 'camm'"),
    ],
)
def test_model_and_reference_errors_name_the_file_and_line(
    tmp_path: Path, body: str, line: int, message: str
) -> None:
    found = problems(tmp_path, HEADER + body)
    assert any(f"scenario.yaml:{line}:" in p and message in p for p in found), found


def test_fleet_dependent_problems_are_located_too_and_nothing_runs(tmp_path: Path) -> None:
    result, path = load(
        tmp_path,
        HEADER
        + """\
  traffic:
    - source: cam
      pattern: diurnal
""",
    )
    assert not result.problems  # type: ignore[attr-defined]
    fleet = result.fleet  # type: ignore[attr-defined]
    calls: list[float] = []
    with pytest.raises(ValidationError) as error:
        simulate(
            fleet,
            fleet.placements["plan"],
            fleet.scenarios["s"],
            locate=result.sources.locate,  # type: ignore[attr-defined]
            progress=lambda done, total: calls.append(done),
        )
    text = str(error.value)
    assert f"{path}:8:16 spec.traffic[0].pattern" in text
    assert "needs a daily shape" in text and "add diurnal" in text
    assert calls == []  # nothing ran
