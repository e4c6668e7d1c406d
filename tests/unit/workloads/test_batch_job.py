"""The bundled batch job trains, evaluates and writes its result and model atomically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fleetplane.workloads.batch import main
from fleetplane.workloads.mlp import Mlp


def test_batch_job_writes_its_evaluation_and_model(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    out = tmp_path / "out" / "result.json"
    main(["--epochs", "8", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["epochs"] == 8 and result["slurmJobId"] == "42"
    assert result["accuracy"] > 0.95
    confusion = result["confusion"]
    assert sum(map(sum, confusion)) == result["samples"] == 360
    correct = sum(confusion[d][d] for d in range(10))
    assert correct / result["samples"] == pytest.approx(result["accuracy"])
    model = Mlp.load(Path(result["model"]))
    assert model.w1.shape == (64, 32)
    assert sorted(p.name for p in out.parent.iterdir()) == ["result.json", "result.npz"]


def test_batch_job_refuses_zero_epochs(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["--epochs", "0", "--out", str(tmp_path / "r.json")])
