"""``fleetplane generate``: files per kind, loadable, deterministic, clean stdout."""

from __future__ import annotations

import json
from pathlib import Path

from ruamel.yaml import YAML
from typer.testing import CliRunner

from fleetplane.cli.main import app
from fleetplane.model.loader import load_fleet

FILES = (
    "sites.yaml",
    "links.yaml",
    "node-images.yaml",
    "data-sources.yaml",
    "workloads.yaml",
    "policy.yaml",
)


def _generate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["generate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_writes_one_loadable_file_per_kind(tmp_path: Path) -> None:
    code, stdout, stderr = _generate(
        "--sites", "12", "--workloads", "30", "--seed", "2", "--out", str(tmp_path)
    )
    assert code == 0, stderr
    assert stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(FILES)
    fleet = load_fleet(tmp_path)
    assert len(fleet.sites) == 12
    assert len(fleet.workloads) == 30
    assert "workloads.yaml" in stderr  # the summary names the files


def test_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    for run in ("a", "b"):
        code, _, stderr = _generate(
            "--sites", "8", "--workloads", "20", "--seed", "5", "--out", str(tmp_path / run)
        )
        assert code == 0, stderr
    for name in FILES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_json_summary_on_stdout(tmp_path: Path) -> None:
    code, stdout, stderr = _generate(
        "--sites", "5", "--workloads", "4", "--out", str(tmp_path), "-o", "json"
    )
    assert code == 0, stderr
    summary = json.loads(stdout)
    counts = {entry["kind"]: entry["count"] for entry in summary["files"]}
    assert counts["Site"] == 5
    assert counts["Workload"] == 4


def test_without_out_the_documents_go_to_stdout() -> None:
    code, stdout, stderr = _generate("--sites", "4", "--workloads", "3", "--seed", "1")
    assert code == 0, stderr
    documents = list(YAML(typ="safe", pure=True).load_all(stdout))
    kinds = [d["kind"] for d in documents]
    assert kinds.count("Site") == 4
    assert kinds.count("Workload") == 3


def test_out_must_be_a_directory(tmp_path: Path) -> None:
    target = tmp_path / "file.yaml"
    target.write_text("", encoding="utf-8")
    code, stdout, stderr = _generate("--sites", "2", "--workloads", "1", "--out", str(target))
    assert code == 1
    assert stdout == ""
    assert "not a directory" in stderr
