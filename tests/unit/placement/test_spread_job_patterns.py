"""A spread job that reads a data source keeps each failure domain able to run all of it.

Found by the property test: the improvement pass placed such a job with a
pattern whose two halves were each designed for half the data, which verify
refuses (each failure domain must be able to take the whole job).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetplane.model.loader import load_fleet
from fleetplane.placement import plan

FLEET = Path(__file__).parents[2] / "fixtures" / "placement" / "spread-job-with-source.yaml"


@pytest.mark.parametrize("solver", ["greedy", "exact"])
def test_a_spread_job_with_a_source_is_placed_in_two_whole_domains(solver: str) -> None:
    result = plan(load_fleet(FLEET), solver=solver)  # verify raises on a broken spread
    allocations = result.allocations["job0"]
    domains = {int(result.candidates["job0"].domain[a.candidate]) for a in allocations}
    assert len(domains) == 2
    assert all(a.design_shares == (1.0,) and a.shares == (0.5,) for a in allocations)
