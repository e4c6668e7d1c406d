"""``fleetplane simulate``: outputs, files, sweeps, exit codes, and errors with file:line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetplane.cli.main import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
runner = CliRunner()

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
metadata: {name: edge}
spec:
  tier: edge
  region: r1
  residencyZone: eu
  nodePools:
    - {name: cpu, count: 2, cpu: 8, memory: 32Gi, nodeImage: img}
  cost: {opex: {cpuHour: 0.04/h}}
---
apiVersion: fleetplane/v1
kind: Site
metadata: {name: cloud}
spec:
  tier: regional
  region: r1
  residencyZone: eu
  nodePools:
    - {name: cpu, count: 8, cpu: 32, memory: 128Gi, nodeImage: img}
  cost: {opex: {cpuHour: 0.04/h}}
---
apiVersion: fleetplane/v1
kind: Link
metadata: {name: edge-cloud}
spec:
  a: edge
  b: cloud
  latency: {p50: 10ms, p99: 25ms}
  bandwidth: 1Gbps
  egressPrice: {aToB: 0.09/GB}
---
apiVersion: fleetplane/v1
kind: DataSource
metadata: {name: cam}
spec: {site: edge, requestRate: 80/s, requestSize: 50KB}
---
apiVersion: fleetplane/v1
kind: Workload
metadata: {name: detect}
spec:
  class: inference
  slo: {latency: {p99: 80ms}}
  demand: [{source: cam}]
  resources: {cpu: 1, memory: 1Gi}
  profiles: [{hardware: cpu, serviceTime: {mean: 10ms, cv: 1}, concurrency: 2}]
"""

PLACEMENT = """\
apiVersion: fleetplane/v1
kind: Placement
metadata: {name: manual}
spec:
  solver: {name: hand, version: "1", seed: 0}
  workloads:
    - workload: detect
      workloadClass: inference
      predicted: {p99: 0.060}
      cost: {compute: 120}
      assignments:
        - {site: cloud, pool: cpu, profile: cpu, replicas: 1, sources: {cam: 1}}
"""

SCENARIO = """\
apiVersion: fleetplane/v1
kind: Scenario
metadata: {name: outage}
spec:
  duration: 5m
  seed: 3
  timeout: 1s
  detectionDelay: 5s
  faults:
    - {type: siteDown, site: cloud, at: 2m, duration: 30s}
"""


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    directory = tmp_path / "fleet"
    directory.mkdir()
    (directory / "fleet.yaml").write_text(FLEET, encoding="utf-8")
    (tmp_path / "placement.yaml").write_text(PLACEMENT, encoding="utf-8")
    (tmp_path / "scenario.yaml").write_text(SCENARIO, encoding="utf-8")
    return directory


def simulate(*args: str | Path) -> object:
    return runner.invoke(app, ["simulate", *map(str, args)])


def test_table_json_file_and_report(fleet: Path, tmp_path: Path) -> None:
    out_json, report = tmp_path / "out" / "result.json", tmp_path / "out" / "report.html"
    result = simulate(
        fleet, "--scenario", tmp_path / "scenario.yaml", "--placement", tmp_path / "placement.yaml",
        "--json", out_json, "--report", report,
    )  # fmt: skip
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    stdout = result.stdout  # type: ignore[attr-defined]
    assert "scenario outage over placement manual" in stdout
    assert "WORKLOAD" in stdout and "detect" in stdout and "cloud" in stdout
    document = json.loads(out_json.read_text())
    (workload,) = document["workloads"]
    outcomes = workload["outcomes"]
    assert outcomes["requests"] == sum(
        outcomes[k] for k in ("ok", "late", "lost", "expired", "dropped")
    )
    assert outcomes["lost"] > 0  # the detection window of the outage
    assert workload["comparison"]["predictedP99"] == 0.06
    assert document["faults"][0]["type"] == "siteDown"
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 3


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_machine_readable_stdout_holds_only_the_document(
    fleet: Path, tmp_path: Path, fmt: str
) -> None:
    result = simulate(
        fleet, "--scenario", tmp_path / "scenario.yaml", "--placement", tmp_path / "placement.yaml",
        "-o", fmt, "--seed", "11",
    )  # fmt: skip
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    stdout = result.stdout  # type: ignore[attr-defined]
    if fmt == "json":
        document = json.loads(stdout)
    else:
        from ruamel.yaml import YAML

        document = YAML(typ="safe").load(stdout)
    assert document["seed"] == 11 and document["workloads"][0]["workload"] == "detect"


def test_same_seed_same_output(fleet: Path, tmp_path: Path) -> None:
    args = (
        fleet,
        "--scenario",
        tmp_path / "scenario.yaml",
        "--placement",
        tmp_path / "placement.yaml",
        "-o",
        "json",
    )
    first = json.loads(simulate(*args).stdout)  # type: ignore[attr-defined]
    again = json.loads(simulate(*args).stdout)  # type: ignore[attr-defined]
    for document in (first, again):
        del document["run"]["wallSeconds"], document["run"]["requestsPerSecond"]
    assert first == again


def test_sweep_prints_attainment_and_cost_per_demand(fleet: Path, tmp_path: Path) -> None:
    result = simulate(
        fleet, "--scenario", tmp_path / "scenario.yaml", "--placement", tmp_path / "placement.yaml",
        "--sweep", "demand=0.5,1,2", "--report", tmp_path / "sweep.html",
    )  # fmt: skip
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    lines = result.stdout.splitlines()  # type: ignore[attr-defined]
    assert lines[0].split()[:4] == ["DEMAND", "WORKLOAD", "REQUESTS", "SLO"]
    assert [line.split()[0] for line in lines[1:]] == ["0.5", "1", "2"]
    assert "<svg" in (tmp_path / "sweep.html").read_text()


def test_bad_sweep_is_invalid_input(fleet: Path, tmp_path: Path) -> None:
    result = simulate(
        fleet, "--scenario", tmp_path / "scenario.yaml", "--placement", tmp_path / "placement.yaml",
        "--sweep", "demnd=1,2",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "cannot sweep 'demnd'" in result.stderr and "did you mean 'demand'" in result.stderr  # type: ignore[attr-defined]


def test_bad_scenario_names_file_line_and_field_and_nothing_runs(
    fleet: Path, tmp_path: Path
) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO.replace("site: cloud,", "site: clouds,"), encoding="utf-8")
    out_json = tmp_path / "result.json"
    result = simulate(
        fleet,
        "--scenario",
        scenario,
        "--placement",
        tmp_path / "placement.yaml",
        "--json",
        out_json,
    )
    assert result.exit_code == 1
    stderr = result.stderr  # type: ignore[attr-defined]
    assert f"{scenario}:10:" in stderr and "spec.faults[0].site" in stderr
    assert "unknown Site 'clouds'" in stderr and "did you mean 'cloud'" in stderr
    assert not out_json.exists()
    assert result.stdout == ""  # type: ignore[attr-defined]


def test_diurnal_without_shape_is_reported_at_the_traffic_entry(
    fleet: Path, tmp_path: Path
) -> None:
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(
        SCENARIO + "  traffic:\n    - {source: cam, pattern: diurnal}\n", encoding="utf-8"
    )
    result = simulate(fleet, "--scenario", scenario, "--placement", tmp_path / "placement.yaml")
    assert result.exit_code == 1
    assert f"{scenario}:12:" in result.stderr and "spec.traffic[0].pattern" in result.stderr  # type: ignore[attr-defined]


def test_unplaced_workload_is_an_incomplete_result(fleet: Path, tmp_path: Path) -> None:
    (fleet / "more.yaml").write_text(
        FLEET[FLEET.index("apiVersion: fleetplane/v1\nkind: Workload") :].replace(
            "name: detect", "name: classify"
        ),
        encoding="utf-8",
    )
    result = simulate(
        fleet, "--scenario", tmp_path / "scenario.yaml", "--placement", tmp_path / "placement.yaml"
    )
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    assert "classify" in result.stderr and "not in the placement" in result.stderr  # type: ignore[attr-defined]
    assert "detect" in result.stdout  # type: ignore[attr-defined]


def test_retail_edge_example_with_its_scenario_and_a_plan_made_on_the_fly(tmp_path: Path) -> None:
    scenario = EXAMPLES / "retail-edge" / "scenario.yaml"
    short = tmp_path / "short.yaml"
    short.write_text(
        scenario.read_text()
        .replace("name: evening-rush-eu-west-outage", "name: short-rush")
        .replace("      duration: 3m\n", "      duration: 1m\n")
        .replace("duration: 15m", "duration: 3m")
        .replace("at: 8m", "at: 90s"),
        encoding="utf-8",
    )
    result = simulate(EXAMPLES / "retail-edge", "--scenario", short, "-o", "json")
    document = json.loads(result.stdout)  # type: ignore[attr-defined]
    # Exit 2 (and the names on stderr) exactly when the plan leaves some workload out.
    assert result.exit_code == (2 if document["skipped"] else 0), result.output  # type: ignore[attr-defined]
    for name in document["skipped"]:
        assert name in result.stderr  # type: ignore[attr-defined]
    assert document["scenario"] == "short-rush"
    workloads = {w["workload"]: w for w in document["workloads"]}
    assert len(workloads) + len(document["skipped"]) == 10  # the request-serving ones
    # eu-west's loss prevention is placed only in the failed region: timeouts, then drops.
    lost = workloads["loss-prevention-eu-west"]["outcomes"]
    assert lost["lost"] > 0 and lost["dropped"] > 0
    # Store control fails over to eu-central: nothing dropped.
    assert workloads["store-control-eu"]["outcomes"]["dropped"] == 0
    assert workloads["store-control-eu"]["outcomes"]["lost"] > 0
