"""Arrivals: Poisson at the source's rate, diurnal shapes, bursts, replayed traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import simfleet as sf

from fleetplane.errors import ValidationError
from fleetplane.sim import simulate
from fleetplane.sim.build import build_model
from fleetplane.sim.engine import prepare, run_replication
from fleetplane.sim.traffic import Intensity, poisson_arrivals, read_trace


def dispatch_times(fleet: object, scenario: object, base: Path | None = None) -> np.ndarray:
    from fleetplane.sim.checks import check_scenario

    checked = check_scenario(fleet, scenario, base_dir=base)  # type: ignore[arg-type]
    prep = prepare(build_model(fleet, sf.single_placement(), scenario), checked.traces)  # type: ignore[arg-type]
    return run_replication(prep, np.random.SeedSequence(5)).dispatch


def within(count: int, expected: float) -> bool:
    """A Poisson count within 4 standard deviations of its mean."""
    return abs(count - expected) <= 4 * np.sqrt(expected)


def test_poisson_arrivals_have_the_rate_and_exponential_gaps() -> None:
    rng = np.random.default_rng(1)
    times = poisson_arrivals(rng, Intensity(np.array([0.0, 1000.0]), np.array([50.0])))
    assert within(times.shape[0], 50_000)
    assert np.all(np.diff(times) >= 0) and times[0] >= 0 and times[-1] < 1000
    gaps = np.diff(times)
    assert gaps.mean() == pytest.approx(1 / 50, rel=0.02)
    assert gaps.std() == pytest.approx(1 / 50, rel=0.03)  # exponential: sd = mean


def test_piecewise_rate_gives_each_segment_its_own_count() -> None:
    rng = np.random.default_rng(2)
    rate = Intensity(np.array([0.0, 100.0, 200.0, 300.0]), np.array([10.0, 0.0, 40.0]))
    times = poisson_arrivals(rng, rate)
    counts = np.histogram(times, bins=[0, 100, 200, 300])[0]
    assert within(counts[0], 1000) and counts[1] == 0 and within(counts[2], 4000)


def test_diurnal_pattern_follows_the_hourly_shape_from_the_time_of_day() -> None:
    fleet = sf.single_queue(0.5)  # 50 requests/s at peak
    shape = [1.0] * 24
    shape[8], shape[9] = 0.2, 0.6
    scenario = sf.scenario(
        duration="2h",
        timeOfDay="8h",
        traffic=[{"source": "cam", "pattern": "diurnal", "diurnal": shape}],
    )
    times = dispatch_times(fleet, scenario)
    first, second = np.histogram(times, bins=[0, 3600, 7200])[0]
    assert within(first, 50 * 0.2 * 3600) and within(second, 50 * 0.6 * 3600)


def test_scenario_wide_diurnal_pattern_uses_each_source_shape() -> None:
    fleet = sf.single_queue(0.5)
    shape = [0.5] * 24
    fleet.data_sources["cam"].spec.diurnal = shape
    times = dispatch_times(fleet, sf.scenario(duration="1h", pattern="diurnal"))
    assert within(times.shape[0], 50 * 0.5 * 3600)


def test_bursts_multiply_the_rate_inside_their_window() -> None:
    fleet = sf.single_queue(0.5)
    scenario = sf.scenario(
        duration="20m",
        demandScale=2.0,
        traffic=[
            {
                "source": "cam",
                "scale": 0.5,
                "bursts": [{"at": "5m", "duration": "1m", "multiplier": 4}],
            }
        ],
    )
    times = dispatch_times(fleet, scenario)
    burst = np.count_nonzero((times >= 300) & (times < 360))
    assert within(burst, 50 * 4 * 60)
    assert within(times.shape[0] - burst, 50 * 19 * 60)


def test_trace_is_replayed_exactly_and_scaled_by_thinning_or_copies(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    stamps = np.sort(rng.uniform(0, 600, 5000))
    (tmp_path / "arrivals.csv").write_text(
        "timestamp\n" + "\n".join(f"{t:.6f}" for t in stamps) + "\n", encoding="utf-8"
    )
    fleet = sf.single_queue(0.5)

    def replay(scale: float) -> np.ndarray:
        scenario = sf.scenario(
            duration="10m",
            traffic=[
                {"source": "cam", "pattern": "trace", "trace": "arrivals.csv", "scale": scale}
            ],
        )
        return dispatch_times(fleet, scenario, tmp_path)

    np.testing.assert_allclose(replay(1.0), np.round(stamps, 6))
    assert replay(2.0).shape[0] == 10_000
    assert replay(0.5).shape[0] == pytest.approx(2500, abs=4 * np.sqrt(1250))
    assert replay(2.5).shape[0] == pytest.approx(12_500, abs=4 * np.sqrt(1250))


def test_bad_trace_lines_are_reported_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("time\n1.0\nsoon\n-2\n3.5\n", encoding="utf-8")
    with pytest.raises(ValidationError) as error:
        read_trace(path)
    text = str(error.value)
    assert f"{path}:3:1" in text and "'soon' is not a number" in text
    assert f"{path}:4:1" in text and "must be >= 0" in text


def test_missing_trace_file_stops_the_run_before_it_starts(tmp_path: Path) -> None:
    scenario = sf.scenario(
        duration="10m", traffic=[{"source": "cam", "pattern": "trace", "trace": "nowhere.csv"}]
    )
    with pytest.raises(ValidationError, match=r"spec\.traffic\[0\]\.trace.*does not exist"):
        simulate(sf.single_queue(0.5), sf.single_placement(), scenario, base_dir=tmp_path)
