"""What-if is a pure function of a Fleet copy and reports the diff."""

from __future__ import annotations

import pytest

from fleetplane.errors import ValidationError
from fleetplane.model.synthetic import generate_fleet
from fleetplane.placement._internal.whatif import WhatIf, apply, compare


def test_apply_does_not_touch_the_input() -> None:
    fleet = generate_fleet(8, 20, seed=2)
    site = sorted(fleet.sites)[0]
    before = fleet.sites[site].model_dump()
    changed = apply(fleet, WhatIf(without_sites=(site,), scale_demand=2.0, prices={site: 0.5}))
    assert fleet.sites[site].model_dump() == before
    assert changed.sites[site].spec.draining


def test_unknown_site_is_a_user_error() -> None:
    fleet = generate_fleet(8, 20, seed=2)
    with pytest.raises(ValidationError):
        apply(fleet, WhatIf(without_sites=("no-such-site",)))


def test_removing_a_used_site_moves_its_workloads() -> None:
    fleet = generate_fleet(8, 20, seed=2)
    result0 = compare(fleet, WhatIf())
    assert result0.changes == [] and result0.cost_delta == 0
    site = result0.base.placement.spec.workloads[0].assignments[0].site
    result = compare(fleet, WhatIf(without_sites=(site,)), base=result0.base)
    touched = {c.workload for c in result.changes}
    assert result0.base.placement.spec.workloads[0].workload in touched
