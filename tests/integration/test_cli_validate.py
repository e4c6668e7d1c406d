"""``fleetplane validate``: exit codes, and stdout only ever holding the result."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from fleetplane.cli.main import app
from fleetplane.model.kinds import KINDS

FLEET = Path(__file__).resolve().parents[1] / "fixtures" / "loader" / "fleet"
SUMMARY = (
    "ok: 5 sites, 4 links, 3 node images, 3 data sources, 5 workloads, "
    "1 placement policy, 1 scenario\n"
)

runner = CliRunner()


@pytest.fixture
def broken_fleet(tmp_path: Path) -> Path:
    """The fixture fleet with a bad unit in one file and a dangling name in another."""
    fleet = tmp_path / "fleet"
    shutil.copytree(FLEET, fleet)
    sites = fleet / "infrastructure" / "sites.yaml"
    sites.write_text(sites.read_text().replace("memory: 512Gi", "memory: 512Gb"))
    links = fleet / "infrastructure" / "links.yaml"
    links.write_text(links.read_text().replace("a: factory-lyon", "a: factory-lyons"))
    return fleet


def line_of(path: Path, needle: str) -> int:
    text = path.read_text()
    return text.count("\n", 0, text.index(needle)) + 1


def test_a_valid_fleet_prints_one_summary_line() -> None:
    result = runner.invoke(app, ["validate", str(FLEET)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == SUMMARY
    assert result.stderr == ""


def test_problems_go_to_stderr_with_positions_and_exit_1(broken_fleet: Path) -> None:
    result = runner.invoke(app, ["validate", str(broken_fleet)])
    assert result.exit_code == 1
    assert result.stdout == ""
    links = broken_fleet / "infrastructure" / "links.yaml"
    sites = broken_fleet / "infrastructure" / "sites.yaml"
    assert result.stderr.splitlines() == [
        f"{links}:{line_of(links, 'factory-lyons')}:6 spec.a: Link 'lyon-to-region' refers to "
        "unknown Site 'factory-lyons' (did you mean 'factory-lyon'?)",
        f"{sites}:{line_of(sites, '512Gb')}:15 spec.nodePools[0].memory: unknown unit 'Gb' in "
        "'512Gb' for a size; use one of: B, k, K, KB, kB, M, MB, G, GB, T, TB, P, PB, Ki, KiB, "
        "Mi, MiB, Gi, GiB, Ti, TiB, Pi, PiB",
        "invalid: 2 problems in 2 files",
    ]


def test_json_output_of_a_valid_fleet() -> None:
    result = runner.invoke(app, ["validate", str(FLEET), "-o", "json"])
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["valid"] is True
    assert document["problems"] == []
    expected = {
        "Site": 5,
        "Link": 4,
        "NodeImage": 3,
        "DataSource": 3,
        "Workload": 5,
        "PlacementPolicy": 1,
        "Scenario": 1,
    }
    assert document["counts"] == {kind: expected.get(kind, 0) for kind in KINDS}


def test_json_output_of_an_invalid_fleet_still_exits_1(broken_fleet: Path) -> None:
    result = runner.invoke(app, ["validate", str(broken_fleet), "--output", "json"])
    assert result.exit_code == 1
    document = json.loads(result.stdout)
    assert document["valid"] is False
    links = broken_fleet / "infrastructure" / "links.yaml"
    assert document["problems"][0] == {
        "file": str(links),
        "line": line_of(links, "factory-lyons"),
        "column": 6,
        "field": "spec.a",
        "message": "Link 'lyon-to-region' refers to unknown Site 'factory-lyons'",
        "hint": "did you mean 'factory-lyon'?",
    }
    assert len(document["problems"]) == 2
    # The Site with the bad unit is not counted; everything that was valid is.
    assert document["counts"]["Site"] == 4
    assert document["counts"]["Link"] == 4


def test_yaml_output() -> None:
    result = runner.invoke(app, ["validate", str(FLEET), "-o", "yaml"])
    assert result.exit_code == 0
    document = YAML(typ="safe").load(result.stdout)
    assert document["valid"] is True
    assert document["counts"]["Workload"] == 5


def test_several_paths_and_a_missing_one(tmp_path: Path) -> None:
    sites = FLEET / "infrastructure" / "sites.yaml"
    images = FLEET / "infrastructure" / "node-images.yaml"
    result = runner.invoke(app, ["validate", str(sites), str(images)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "ok: 5 sites, 3 node images\n"

    result = runner.invoke(app, ["validate", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"{tmp_path / 'nope'}: no such file or directory" in result.stderr


def test_brackets_in_messages_survive_the_console(tmp_path: Path) -> None:
    # Rich would read "[0]" as markup; the field path must come through verbatim.
    bad = tmp_path / "site.yaml"
    bad.write_text(
        (FLEET / "infrastructure" / "sites.yaml").read_text().replace("count: 2", "count: [2]")
    )
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert " spec.nodePools[0].count: must be a valid integer" in result.stderr


def test_end_to_end_in_a_separate_process(broken_fleet: Path) -> None:
    command = [sys.executable, "-c", "from fleetplane.cli.main import run; run()"]
    done = subprocess.run(
        [*command, "validate", str(broken_fleet)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 3

    done = subprocess.run(
        [*command, "validate", str(FLEET)], capture_output=True, text=True, check=False
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, SUMMARY, "")
