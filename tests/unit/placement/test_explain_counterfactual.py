"""Counterfactuals are true: apply the stated change, re-plan, and the runner-up wins."""

from __future__ import annotations

from fleetplane.model.synthetic import generate_fleet
from fleetplane.placement import plan
from fleetplane.placement._internal.counterfactual import find, runner_up, wins


def test_stated_counterfactuals_hold_when_reapplied() -> None:
    fleet = generate_fleet(8, 12, seed=1)
    result = plan(fleet)
    checked = 0
    for item in result.placement.spec.workloads[:4]:
        site = runner_up(fleet, result, item.workload)
        if site is None:
            continue
        cf = find(fleet, None, item.workload, site)
        if cf is None:
            continue
        assert wins(fleet, None, item.workload, site, cf.price_factor)
        assert site in cf.sentence()
        checked += 1
    assert checked >= 1
