"""``fleetplane plan`` end to end: exit codes, clean stdout, the written Placement."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetplane.cli.main import app
from fleetplane.model.loader import load_fleet

PLACEABLE = """
apiVersion: fleetplane/v1
kind: NodeImage
metadata: {name: img}
spec:
  os: linux
  containerRuntime: {name: containerd, version: "1.7.12"}
  arches: [amd64]
---
apiVersion: fleetplane/v1
kind: Site
metadata: {name: store-1}
spec:
  tier: edge
  region: r1
  residencyZone: eu
  nodePools:
    - {name: cpu, count: 2, cpu: 8, memory: 16Gi, nodeImage: img}
  cost:
    opex: {cpuHour: 0.04/h, memoryGibHour: 0.005/h}
---
apiVersion: fleetplane/v1
kind: DataSource
metadata: {name: cams}
spec: {site: store-1, requestRate: 20/s}
---
apiVersion: fleetplane/v1
kind: Workload
metadata: {name: vision}
spec:
  class: inference
  slo:
    latency: {p99: 100ms}
  demand: [{source: cams}]
  resources: {cpu: 1, memory: 1Gi}
  profiles:
    - hardware: cpu
      serviceTime: {mean: 5ms, cv: 1}
"""

UNPLACEABLE = """
---
apiVersion: fleetplane/v1
kind: Workload
metadata: {name: too-fast}
spec:
  class: inference
  slo:
    latency: {p99: 2ms}
  demand: [{source: cams}]
  resources: {cpu: 1, memory: 1Gi}
  profiles:
    - hardware: cpu
      serviceTime: {mean: 5ms, cv: 1}
"""

POLICY = """
apiVersion: fleetplane/v1
kind: PlacementPolicy
metadata: {name: strict}
spec:
  rules:
    - name: regional-only
      require: site.tier == "regional"
"""


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


def run(*args: str | Path) -> Run:
    result = CliRunner().invoke(app, [str(a) for a in args])
    return Run(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def fleet_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "fleet"
    directory.mkdir()
    (directory / "fleet.yaml").write_text(PLACEABLE)
    return directory


def test_all_placed_exits_0_with_a_table(fleet_dir: Path) -> None:
    result = run("plan", fleet_dir)
    assert result.returncode == 0, result.stderr
    assert "vision" in result.stdout
    assert "store-1/cpu ×1" in result.stdout
    assert "1 placed" in result.stdout


def test_unplaceable_exits_2_and_still_prints_the_plan_and_reasons(fleet_dir: Path) -> None:
    (fleet_dir / "more.yaml").write_text(UNPLACEABLE)
    result = run("plan", fleet_dir)
    assert result.returncode == 2
    assert "vision" in result.stdout
    assert "unplaceable too-fast" in result.stdout
    assert "latency SLO" in result.stdout
    assert "closest miss: store-1/cpu: p99" in result.stdout


def test_invalid_input_exits_1_with_errors_only_on_stderr(fleet_dir: Path) -> None:
    (fleet_dir / "broken.yaml").write_text(
        "apiVersion: fleetplane/v1\nkind: Site\nmetadata: {name: x}\nspec: {tier: moon}\n"
    )
    result = run("plan", fleet_dir, "-o", "json")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "broken.yaml:" in result.stderr


def test_json_output_is_only_the_placement_document(fleet_dir: Path) -> None:
    result = run("plan", fleet_dir, "-o", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["kind"] == "Placement"
    assert document["spec"]["solver"]["name"] == "greedy"
    assert [w["workload"] for w in document["spec"]["workloads"]] == ["vision"]


def test_json_output_stays_pure_when_some_workloads_are_unplaceable(fleet_dir: Path) -> None:
    (fleet_dir / "more.yaml").write_text(UNPLACEABLE)
    result = run("plan", fleet_dir, "-o", "json")
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert [u["workload"] for u in document["spec"]["unplaceable"]] == ["too-fast"]


def test_out_writes_a_placement_that_loads_back(fleet_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "plan" / "placement.yaml"
    result = run("plan", fleet_dir, "--out", target, "--seed", "7")
    assert result.returncode == 0, result.stderr
    loaded = load_fleet(target, references=False)
    (placement,) = loaded.placements.values()
    assert placement.spec.solver.seed == 7
    assert placement.spec.workloads[0].assignments[0].site == "store-1"


def test_policy_file_overrides_the_fleets_policy(fleet_dir: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    result = run("plan", fleet_dir, "--policy", policy, "-o", "json")
    assert result.returncode == 2
    document = json.loads(result.stdout)
    assert document["spec"]["policy"] == "strict"
    (missing,) = document["spec"]["unplaceable"]
    assert "regional-only" in missing["rejections"][0]["example"]


def test_policy_file_with_other_kinds_is_rejected(fleet_dir: Path) -> None:
    result = run("plan", fleet_dir, "--policy", fleet_dir / "fleet.yaml")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "expected exactly one PlacementPolicy" in result.stderr


def test_policy_compile_error_points_at_the_rule(fleet_dir: Path, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY.replace('site.tier == "regional"', "site.tier =="))
    result = run("plan", fleet_dir, "--policy", policy)
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"{policy}:8:" in result.stderr
    assert "spec.rules[0].require" in result.stderr
    assert "rule 'regional-only' does not compile" in result.stderr


def test_unknown_solver_is_an_input_error(fleet_dir: Path) -> None:
    result = run("plan", fleet_dir, "--solver", "quantum")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "unknown solver 'quantum'" in result.stderr


def test_the_installed_command_in_a_real_process(fleet_dir: Path) -> None:
    (fleet_dir / "more.yaml").write_text(UNPLACEABLE)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from fleetplane.cli.main import run; run()",
            "plan",
            str(fleet_dir),
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert json.loads(result.stdout)["kind"] == "Placement"


@pytest.mark.parametrize("solver", ["greedy", "exact"])
def test_json_on_stdout_of_a_real_process_is_only_the_document(solver: str) -> None:
    # HiGHS writes its banner from C, past sys.stdout: only a real process shows it.
    # hybrid-hpc is small but contested enough that greedy's improvement pass runs its MILP.
    example = Path(__file__).parents[2] / "examples" / "hybrid-hpc"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from fleetplane.cli.main import run; run()",
            "plan",
            str(example),
            "--solver",
            solver,
            "-o",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["spec"]["solver"]["name"] == solver


def test_a_long_plan_table_reads_as_rich_prints_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fleetplane.cli import long_table

    fleet = tmp_path / "generated"
    assert run("generate", "--sites", "30", "--workloads", "260", "--out", fleet).returncode == 0
    fast_rows: list[int] = []
    body_lines = long_table._body_lines
    monkeypatch.setattr(
        long_table,
        "_body_lines",
        lambda table, rows, *rest: fast_rows.append(len(rows)) or body_lines(table, rows, *rest),
    )
    fast = run("plan", fleet)
    assert fast_rows and fast_rows[0] > long_table.MIN_ROWS  # the table took the quick path
    monkeypatch.setattr(long_table, "MIN_ROWS", 10**9)
    by_rich = run("plan", fleet)
    assert fast.returncode == by_rich.returncode
    assert fast.stdout == by_rich.stdout


def test_an_error_quoting_bracketed_input_prints_it_whole(fleet_dir: Path) -> None:
    """User input in an error is never read as rich markup ('[gi]' would vanish as a tag)."""
    fleet = fleet_dir / "fleet.yaml"
    fleet.write_text(fleet.read_text().replace("memory: 16Gi", 'memory: "16[gi]"'))
    result = run("plan", fleet_dir)
    assert result.returncode == 1
    assert "cannot read '16[gi]' as a size" in result.stderr
    assert result.stdout == ""
