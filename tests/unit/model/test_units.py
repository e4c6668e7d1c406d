from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetplane.errors import UnitError
from fleetplane.model import units


@pytest.mark.parametrize(
    ("parse", "text", "expected"),
    [
        (units.parse_duration, "45ms", 0.045),
        (units.parse_duration, "1.5s", 1.5),
        (units.parse_duration, "250us", 250e-6),
        (units.parse_duration, "2h", 7200.0),
        (units.parse_duration, "7d", 7 * 86400.0),
        (units.parse_size, "16Gi", 16 * 2**30),
        (units.parse_size, "512Mi", 512 * 2**20),
        (units.parse_size, "2GB", 2 * 10**9),
        (units.parse_size, 1024, 1024),
        (units.parse_bandwidth, "200Mbps", 200e6),
        (units.parse_bandwidth, "1Gbps", 1e9),
        (units.parse_byte_rate, "40Mbps", 5e6),
        (units.parse_byte_rate, "5MB/s", 5e6),
        (units.parse_price_per_gb, "0.09/GB", 0.09),
        (units.parse_price_per_gb, "$0.09/GB", 0.09),
        (units.parse_power, "350W", 350.0),
        (units.parse_power, "1.2kW", 1200.0),
        (units.parse_energy, "2J", 2.0),
        (units.parse_energy, "1Wh", 3600.0),
        (units.parse_energy_price, "0.15/kWh", 0.15),
        (units.parse_hourly_price, "0.04/h", 0.04),
        (units.parse_hourly_price, 0.04, 0.04),
        (units.parse_cpu, "500m", 0.5),
        (units.parse_cpu, 2, 2.0),
        (units.parse_rate, "200/s", 200.0),
        (units.parse_rate, "120/min", 2.0),
        (units.parse_rate, 30, 30.0),
    ],
)
def test_parses_quantities_as_people_write_them(parse, text, expected) -> None:  # type: ignore[no-untyped-def]
    assert parse(text) == pytest.approx(expected)


def test_percent_is_a_fraction() -> None:
    assert units.parse_fraction("99.9%") == pytest.approx(0.999)
    assert units.parse_fraction(0.5) == 0.5
    with pytest.raises(UnitError, match="outside"):
        units.parse_fraction("101%")
    with pytest.raises(UnitError, match="percentage"):
        units.parse_fraction("99.9")


@pytest.mark.parametrize(
    ("parse", "value", "message"),
    [
        (units.parse_duration, "45", "has no unit"),
        (units.parse_duration, 45, "has no unit"),
        (units.parse_duration, "45 parsecs", "unknown unit 'parsecs'"),
        (units.parse_duration, "fast", "cannot read 'fast'"),
        (units.parse_size, "-1Gi", "must not be negative"),
        (units.parse_size, "1.5", "whole number of bytes"),
        (units.parse_bandwidth, "200MB", "unknown unit"),
        (units.parse_power, True, "expected a power"),
        (units.parse_price_per_gb, "0.09", "has no unit"),
    ],
)
def test_bad_quantities_say_what_and_how_to_fix(parse, value, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(UnitError, match=message):
        parse(value)


@given(st.floats(min_value=1e-7, max_value=1e6, allow_nan=False))
def test_duration_formatting_round_trips(seconds: float) -> None:
    assert units.parse_duration(units.format_duration(seconds)) == pytest.approx(seconds, rel=1e-5)


@given(st.integers(min_value=0, max_value=2**50))
def test_size_formatting_round_trips(num_bytes: int) -> None:
    assert units.parse_size(units.format_size(num_bytes)) == num_bytes
