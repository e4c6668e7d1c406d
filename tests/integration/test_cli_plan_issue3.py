"""``fleetplane plan`` issue-3 options end to end: solvers, re-plans, explain, what-if, baselines.

Runs the CLI in-process (typer's CliRunner) on the small explain fleet:
store-1 is chosen for ``vision``, store-2 is the dearer runner-up next door,
cloud-1 is cheaper but too far for the 40 ms p99, cloud-us is in the wrong
residency zone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from fleetplane.cli.main import app

FIXTURE = Path(__file__).parents[1] / "fixtures" / "placement" / "explain-fleet.yaml"


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


def run(*args: str | Path) -> Run:
    result = CliRunner().invoke(app, ["plan", *[str(a) for a in args]])
    return Run(result.exit_code, result.stdout, result.stderr)


def sites_of(document: dict[str, object], workload: str = "vision") -> list[str]:
    spec = document["spec"]
    assert isinstance(spec, dict)
    item = next(w for w in spec["workloads"] if w["workload"] == workload)
    return [a["site"] for a in item["assignments"]]


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    path = tmp_path / "fleet.yaml"
    path.write_text(FIXTURE.read_text())
    return path


@pytest.mark.parametrize("solver", ["exact", "auto"])
def test_exact_and_auto_report_the_solver_and_its_gap(fleet: Path, solver: str) -> None:
    result = run(fleet, "--solver", solver, "--time-limit", "5", "-o", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    info = document["spec"]["solver"]
    assert info["name"] == solver
    assert info["timeLimit"] == 5
    assert info["optimalityGap"] == pytest.approx(0.0, abs=1e-3)
    assert sites_of(document) == ["store-1"]


def test_unknown_solver_is_a_user_error(fleet: Path) -> None:
    result = run(fleet, "--solver", "magic")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "unknown solver 'magic'" in result.stderr


def test_replanning_an_unchanged_fleet_moves_nothing(fleet: Path, tmp_path: Path) -> None:
    current = tmp_path / "current.yaml"
    first = run(fleet, "--out", current, "-o", "json")
    assert first.returncode == 0, first.stderr
    again = run(fleet, "--current", current, "-o", "json")
    assert again.returncode == 0, again.stderr
    document = json.loads(again.stdout)
    assert document["spec"].get("changes", []) == []
    assert sites_of(document) == ["store-1"]


def test_replanning_moves_workloads_off_a_draining_site(fleet: Path, tmp_path: Path) -> None:
    current = tmp_path / "current.yaml"
    assert run(fleet, "--out", current, "-o", "json").returncode == 0
    fleet.write_text(
        fleet.read_text().replace(
            "metadata: {name: store-1}",
            'metadata: {name: store-1, annotations: {fleetplane.io/draining: "true"}}',
        )
    )
    result = run(fleet, "--current", current)
    assert result.returncode == 0, result.stderr
    assert "Changes against the current plan" in result.stdout
    assert "moved" in result.stdout
    assert "store-2/cpu" in result.stdout
    document = json.loads(run(fleet, "--current", current, "-o", "json").stdout)
    [change] = document["spec"]["changes"]
    assert change["workload"] == "vision" and change["action"] == "moved"
    assert sites_of(document) == ["store-2"]


def test_current_must_be_a_placement(fleet: Path) -> None:
    result = run(fleet, "--current", fleet)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "expected exactly one Placement" in result.stderr


def test_explain_prints_rejections_breakdowns_and_checked_counterfactuals(fleet: Path) -> None:
    result = run(fleet, "--explain", "vision")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "store-1/cpu on cpu ×1" in out and "compute" in out and "egress" in out
    assert "p99 from cams" in out and "network RTT" in out and "wait" in out
    assert "rules fired: none" in out
    assert "data residency: 1 site(s) (cloud-us/general: zone us" in out
    assert "latency SLO: 1 site(s) (cloud-1/general: p99" in out
    assert "runner-up: store-2" in out
    assert "counterfactual (price): store-2 would win vision if its compute price were ≤" in out
    assert "counterfactual (latency): cloud-1 would win vision if the p99 budget were ≥" in out


def test_explain_as_json_is_only_the_report(fleet: Path) -> None:
    result = run(fleet, "--explain", "vision", "-o", "json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["explain"]
    assert report["runnerUp"]["site"] == "store-2"
    assert {cf["kind"] for cf in report["counterfactuals"]} == {"price", "latency"}
    [chosen] = report["chosen"]
    latency = chosen["latency"]
    parts = latency["storage"] + latency["network"] + latency["service"] + latency["wait"]
    assert parts == pytest.approx(latency["total"])
    assert [g["constraint"] for g in report["rejected"]] == ["data residency", "latency SLO"]


def test_explain_unknown_workload_is_a_user_error(fleet: Path) -> None:
    result = run(fleet, "--explain", "visoin")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "--explain visoin: no such workload" in result.stderr
    assert "vision" in result.stderr  # did you mean


def test_without_site_shows_what_moves_and_the_cost(fleet: Path) -> None:
    result = run(fleet, "--without-site", "store-1")
    assert result.returncode == 0, result.stderr
    assert "What-if against the unmodified plan" in result.stdout
    assert "store-2/cpu" in result.stdout
    document = json.loads(run(fleet, "--without-site", "store-1", "-o", "json").stdout)
    whatif = document["whatIf"]
    assert whatif["withoutSites"] == ["store-1"]
    [change] = whatif["changes"]
    assert change["workload"] == "vision" and change["after"] == ["store-2/cpu ×1"]
    assert whatif["costDelta"] > 0  # store-2 is dearer


def test_without_unknown_site_fails_cleanly(fleet: Path) -> None:
    result = run(fleet, "--without-site", "store-9", "-o", "json")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "--without-site store-9: no such site" in result.stderr


def test_scale_demand_reports_at_risk_and_rejects_non_positive_factors(fleet: Path) -> None:
    result = run(fleet, "--scale-demand", "3", "-o", "yaml")
    assert result.returncode == 0, result.stderr
    document = YAML(typ="safe").load(result.stdout)
    assert document["whatIf"]["scaleDemand"] == 3.0
    assert "newlyUnplaceable" in document["whatIf"]
    bad = run(fleet, "--scale-demand", "0")
    assert bad.returncode == 1 and bad.stdout == ""
    assert "--scale-demand must be > 0" in bad.stderr


def test_price_factor_moves_the_workload_to_the_cheaper_site(fleet: Path) -> None:
    result = run(fleet, "--price", "store-2=0.5", "-o", "json")
    assert result.returncode == 0, result.stderr
    [change] = json.loads(result.stdout)["whatIf"]["changes"]
    assert change["after"] == ["store-2/cpu ×1"]
    bad = run(fleet, "--price", "store-2=cheap")
    assert bad.returncode == 1 and bad.stdout == ""
    assert "write SITE=FACTOR" in bad.stderr


def test_compare_baselines_prints_each_plan(fleet: Path) -> None:
    result = run(fleet, "--compare-baselines")
    assert result.returncode == 0, result.stderr
    for name in ("fleetplane", "cloud-only", "edge-ward", "nearest"):
        assert name in result.stdout
    plans = json.loads(run(fleet, "--compare-baselines", "-o", "json").stdout)["baselines"]
    by_name = {p["plan"]: p for p in plans["plans"]}
    assert by_name["fleetplane"]["predictedSloMisses"] == 0
    # cloud-only puts vision on cloud-1, past its 40 ms p99: a predicted miss.
    assert by_name["cloud-only"]["predictedSloMisses"] == 1
