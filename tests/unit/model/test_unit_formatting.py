"""Every quantity serialises to a human form that parses back to the same value."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetplane.model import units

PAIRS: list[tuple[Callable[[float], str], Callable[[Any], float]]] = [
    (units.format_bandwidth, units.parse_bandwidth),
    (units.format_byte_rate, units.parse_byte_rate),
    (units.format_power, units.parse_power),
    (units.format_energy, units.parse_energy),
    (units.format_rate, units.parse_rate),
    (units.format_price_per_gb, units.parse_price_per_gb),
    (units.format_energy_price, units.parse_energy_price),
    (units.format_hourly_price, units.parse_hourly_price),
]


@pytest.mark.parametrize(("fmt", "parse"), PAIRS, ids=lambda f: getattr(f, "__name__", "f"))
@given(value=st.floats(min_value=0.0, max_value=1e13, allow_nan=False, allow_infinity=False))
def test_formatted_quantities_parse_back(
    fmt: Callable[[float], str], parse: Callable[[Any], float], value: float
) -> None:
    text = fmt(value)
    assert parse(text) == pytest.approx(value, rel=1e-11, abs=1e-300)


def test_zero_is_written_in_the_base_unit() -> None:
    assert units.format_power(0.0) == "0W"
    assert units.format_bandwidth(0.0) == "0bps"
    assert units.format_energy(0.0) == "0J"


def test_link_document_round_trips() -> None:
    from fleetplane.model.infrastructure import Link

    doc = {
        "kind": "Link",
        "metadata": {"name": "a-b"},
        "spec": {
            "a": "a",
            "b": "b",
            "latency": {"p50": "12ms", "p99": "40ms"},
            "bandwidth": "200Mbps",
            "egressPrice": {"aToB": "0.02/GB", "bToA": "0.09/GB"},
        },
    }
    link = Link.model_validate(doc)
    again = Link.model_validate(link.to_document())
    assert again == link
    assert link.to_document()["spec"]["bandwidth"] == "200Mbps"
