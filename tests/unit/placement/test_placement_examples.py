"""The example fleets plan completely and pass the independent checker."""

from __future__ import annotations

from pathlib import Path

import pytest
from placement_checker import check

from fleetplane.model.loader import load_fleet
from fleetplane.placement import plan

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


@pytest.mark.parametrize("name", ["retail-edge", "factory", "telco-mec", "hybrid-hpc"])
def test_example_plans_completely_without_breaking_a_constraint(name: str) -> None:
    fleet = load_fleet(EXAMPLES / name)
    result = plan(fleet)
    assert [u.workload for u in result.placement.spec.unplaceable] == []
    assert check(fleet, result) == []
    for item in result.placement.spec.workloads:
        if item.slo_p99 is not None:
            assert item.predicted.p99 is not None
            assert item.predicted.p99 <= item.slo_p99 * (1 + 1e-6)
