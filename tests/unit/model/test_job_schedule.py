"""spec.schedule: how often a job runs, in human units, with clear errors."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from fleetplane.model.workload import JobSchedule, WorkloadSpec


def spec(cls: str = "batch", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "class": cls,
        "resources": {"cpu": 1, "memory": "1Gi"},
        **extra,
    }
    if cls in ("batch", "training"):
        body.setdefault("slo", {"deadline": "6h"})
        body["profiles"] = [{"hardware": "cpu", "runtime": "2h"}]
    else:
        body.setdefault("slo", {"latency": {"p99": "50ms"}})
        body["demand"] = [{"source": "cams"}]
        body["profiles"] = [{"hardware": "cpu", "serviceTime": {"mean": "5ms"}}]
    return body


def test_schedule_is_optional_and_parsed_in_human_units() -> None:
    assert WorkloadSpec.model_validate(spec()).schedule is None
    weekly = WorkloadSpec.model_validate(spec(schedule={"every": "7d"})).schedule
    assert weekly is not None
    assert weekly.every == pytest.approx(7 * 86400)


def test_duty_is_the_run_over_the_period_capped_at_one() -> None:
    nightly = JobSchedule.model_validate({"every": "24h"})
    assert nightly.duty(2 * 3600) == pytest.approx(1 / 12)
    assert nightly.duty(30 * 3600) == 1.0


@pytest.mark.parametrize("every", ["0s", "-1h"])
def test_a_period_must_be_positive(every: str) -> None:
    with pytest.raises(ValidationError, match=r"schedule.every must be > 0|negative"):
        WorkloadSpec.model_validate(spec(schedule={"every": every}))


def test_an_unknown_unit_is_an_error() -> None:
    with pytest.raises(ValidationError, match="every"):
        WorkloadSpec.model_validate(spec(schedule={"every": "2 fortnights"}))


def test_request_workloads_have_no_schedule() -> None:
    with pytest.raises(ValidationError, match="schedule is for batch/training jobs"):
        WorkloadSpec.model_validate(spec("inference", schedule={"every": "24h"}))


def test_a_run_must_be_due_before_the_next_starts() -> None:
    with pytest.raises(ValidationError, match=r"slo.deadline \(6h\) is longer than schedule.every"):
        WorkloadSpec.model_validate(spec(schedule={"every": "4h"}))
