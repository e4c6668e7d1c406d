"""moveCost.paybackPeriod: a move is made only when its saving over the period beats its cost."""

from __future__ import annotations

import itertools
import math
from functools import cache
from pathlib import Path

import pytest

from fleetplane.model.loader import load_documents, read_fleet
from fleetplane.model.placement import Placement
from fleetplane.model.policy import PlacementPolicy
from fleetplane.model.units import HOURS_PER_MONTH
from fleetplane.placement import default_policy, plan
from fleetplane.placement._internal.whatif import WhatIf, apply

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
MONTH = HOURS_PER_MONTH * 3600.0


def _policy(months: float) -> PlacementPolicy:
    base = default_policy()
    cost = base.spec.move_cost.model_copy(update={"payback_period": months * MONTH})
    return base.model_copy(update={"spec": base.spec.model_copy(update={"move_cost": cost})})


@cache
def _moved(months: float) -> dict[str, tuple[float, float]]:
    """Retail-edge at 90% demand re-planned from its plan: moved workload -> (saving, cost)."""
    fleet = read_fleet(EXAMPLES / "retail-edge").fleet
    current: Placement = plan(fleet).placement
    again = plan(apply(fleet, WhatIf(scale_demand=0.9)), _policy(months), current=current)
    return {
        c.workload: (-c.cost_delta, c.move_cost)
        for c in again.placement.spec.changes
        if c.action == "moved"
    }


def test_default_is_one_month() -> None:
    assert default_policy().spec.move_cost.payback_period == pytest.approx(MONTH)


def test_payback_period_is_read_from_yaml() -> None:
    text = """
apiVersion: fleetplane/v1
kind: PlacementPolicy
metadata: {name: patient}
spec:
  moveCost: {disruption: 10, paybackPeriod: 90d}
"""
    fleet = load_documents(text, "policy.yaml", references=False)
    policy = next(iter(fleet.policies.values()))
    assert policy.spec.move_cost.payback_period == pytest.approx(90 * 86400.0)


def test_a_move_happens_exactly_when_it_pays_back_within_the_period() -> None:
    # With a very long period every saving move is made; each has a payback time
    # (one-off cost / monthly saving). A period between two of those times must make
    # exactly the moves that pay back faster, and none with a period shorter than all.
    eager = _moved(1e6)
    payback = {name: cost / saving for name, (saving, cost) in eager.items() if saving > 0}
    assert len(payback) >= 2, f"the scenario needs moves with different payback times: {eager}"
    times = sorted(set(payback.values()))
    assert times[0] > 1.0  # nothing in this scenario pays back within the default month
    assert _moved(1.0) == {}
    checked = 0
    for shorter, longer in itertools.pairwise(times):
        if longer < 1.5 * shorter:
            continue  # too close to tell apart: the decision is on the pre-trim objective
        period = math.sqrt(shorter * longer)
        expected = {name for name, t in payback.items() if t < period}
        assert set(_moved(period)) == expected, (period, payback)
        checked += 1
    assert checked >= 1
