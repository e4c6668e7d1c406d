from __future__ import annotations

import pytest
from pydantic import ValidationError

from fleetplane.model.workload import ServiceTimeSpec


@pytest.mark.parametrize(
    ("distribution", "cv"), [("deterministic", 0.05), ("exponential", 0.5), ("exponential", 0.0)]
)
def test_a_fixed_shape_distribution_rejects_a_contradicting_cv(
    distribution: str, cv: float
) -> None:
    with pytest.raises(ValidationError, match=f"a {distribution} service time has cv"):
        ServiceTimeSpec.model_validate({"mean": "2ms", "cv": cv, "distribution": distribution})


@pytest.mark.parametrize(
    ("distribution", "cv"),
    [
        ("deterministic", 0.0),
        ("exponential", 1.0),
        ("lognormal", 0.3),
        ("gamma", 2.0),
        ("auto", 0.7),
    ],
)
def test_consistent_service_times_are_accepted(distribution: str, cv: float) -> None:
    spec = ServiceTimeSpec.model_validate({"mean": "2ms", "cv": cv, "distribution": distribution})
    assert spec.cv == cv
    assert spec.mean == pytest.approx(0.002)
