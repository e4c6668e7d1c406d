"""Quantities as people write them, parsed in one place.

Internal units, used by every engine:

==============  ==========================  =====================
quantity        written as                  stored as
==============  ==========================  =====================
duration        ``45ms``, ``1.5s``, ``7d``  float seconds
size            ``16Gi``, ``512Mi``, ``2GB`` int bytes
bandwidth       ``200Mbps``, ``1Gbps``      float bits/second
byte rate       ``5MB/s``, ``40Mbps``       float bytes/second
request rate    ``200/s``, ``30rps``        float per second
price per GB    ``0.09/GB``                 float money per 1e9 bytes
energy price    ``0.15/kWh``                float money per kWh
hourly price    ``0.04/h``                  float money per hour
power           ``350W``, ``1.2kW``         float watts
energy          ``2J``, ``0.5mJ``, ``1Wh``  float joules
percent         ``99.9%``                   float fraction (0.999)
cpu             ``500m``, ``2``, ``2.5``    float cores
==============  ==========================  =====================

Plain numbers are accepted where the unit is unambiguous (cpu, fractions,
money); elsewhere a bare number is an error, because ``latency: 50``
(milliseconds? seconds?) is exactly the mistake we want to catch.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from fleetplane.errors import UnitError

_NUMBER = r"([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
_QUANTITY = re.compile(rf"^\s*\$?{_NUMBER}\s*([A-Za-zµ/%$]*(?:/[A-Za-z]+)?)\s*$")

DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "min": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
}
SIZE_UNITS = {
    "": 1,
    "B": 1,
    "k": 10**3,
    "K": 10**3,
    "KB": 10**3,
    "kB": 10**3,
    "M": 10**6,
    "MB": 10**6,
    "G": 10**9,
    "GB": 10**9,
    "T": 10**12,
    "TB": 10**12,
    "P": 10**15,
    "PB": 10**15,
    "Ki": 2**10,
    "KiB": 2**10,
    "Mi": 2**20,
    "MiB": 2**20,
    "Gi": 2**30,
    "GiB": 2**30,
    "Ti": 2**40,
    "TiB": 2**40,
    "Pi": 2**50,
    "PiB": 2**50,
}
BANDWIDTH_UNITS = {
    "bps": 1.0,
    "kbps": 1e3,
    "Kbps": 1e3,
    "Mbps": 1e6,
    "Gbps": 1e9,
    "Tbps": 1e12,
}
BYTE_RATE_UNITS = {
    "B/s": 1.0,
    "KB/s": 1e3,
    "kB/s": 1e3,
    "MB/s": 1e6,
    "GB/s": 1e9,
    "KiB/s": 2.0**10,
    "MiB/s": 2.0**20,
    "GiB/s": 2.0**30,
}
RATE_UNITS = {
    "/s": 1.0,
    "rps": 1.0,
    "/min": 1 / 60,
    "rpm": 1 / 60,
    "/h": 1 / 3600,
    "/d": 1 / 86400,
}
POWER_UNITS = {"mW": 1e-3, "W": 1.0, "kW": 1e3, "MW": 1e6}
ENERGY_UNITS = {
    "uJ": 1e-6,
    "µJ": 1e-6,
    "mJ": 1e-3,
    "J": 1.0,
    "kJ": 1e3,
    "mWh": 3.6,
    "Wh": 3600.0,
    "kWh": 3.6e6,
}
PER_SIZE_PRICE_UNITS = {
    "/GB": 1.0,
    "/TB": 1e-3,
    "/MB": 1e3,
    "/GiB": 1e9 / 2**30,
    "/TiB": 1e9 / 2**40,
}
PER_ENERGY_PRICE_UNITS = {"/kWh": 1.0, "/MWh": 1e-3, "/Wh": 1e3}
PER_TIME_PRICE_UNITS = {"/h": 1.0, "/hour": 1.0, "/mo": 1 / 730, "/month": 1 / 730, "/y": 1 / 8760}
CPU_UNITS = {"": 1.0, "m": 1e-3, "cores": 1.0, "core": 1.0}

HOURS_PER_MONTH = 730.0


def _split(value: str, what: str, example: str) -> tuple[float, str]:
    match = _QUANTITY.match(value)
    if not match:
        raise UnitError(f"cannot read {value!r} as a {what}; write it like {example}")
    return float(match.group(1)), match.group(2)


def _parser(
    what: str,
    units: dict[str, float] | dict[str, int],
    example: str,
    *,
    bare_ok: bool = False,
    allow_negative: bool = False,
) -> Callable[[Any], float]:
    """Build a parser for one kind of quantity, with errors that list the known units."""

    def parse(value: Any) -> float:
        if isinstance(value, bool):
            raise UnitError(f"expected a {what} like {example}, got {value!r}")
        if isinstance(value, int | float):
            if not bare_ok:
                raise UnitError(f"{value!r} has no unit; write the {what} with one, like {example}")
            number, unit = float(value), ""
        elif isinstance(value, str):
            number, unit = _split(value, what, example)
        else:
            raise UnitError(f"expected a {what} like {example}, got {type(value).__name__}")
        if unit not in units:
            if unit == "" and not bare_ok:
                raise UnitError(f"{value!r} has no unit; write the {what} like {example}")
            known = ", ".join(u for u in units if u)
            raise UnitError(f"unknown unit {unit!r} in {value!r} for a {what}; use one of: {known}")
        result = number * units[unit]
        if not math.isfinite(result):
            raise UnitError(f"{value!r} is not a finite {what}")
        if result < 0 and not allow_negative:
            raise UnitError(f"{what} {value!r} must not be negative")
        return result

    return parse


parse_duration = _parser("duration", DURATION_UNITS, "'45ms' or '1.5s'")
parse_bandwidth = _parser("bandwidth", BANDWIDTH_UNITS, "'200Mbps' or '1Gbps'")
parse_power = _parser("power", POWER_UNITS, "'350W' or '1.2kW'")
parse_energy = _parser("energy", ENERGY_UNITS, "'2J' or '0.5mJ'")
parse_price_per_gb = _parser("price per GB", PER_SIZE_PRICE_UNITS, "'0.09/GB'")
parse_energy_price = _parser("energy price", PER_ENERGY_PRICE_UNITS, "'0.15/kWh'")
parse_cpu = _parser("CPU quantity", CPU_UNITS, "'500m' or 2", bare_ok=True)
_parse_size_float = _parser("size", SIZE_UNITS, "'16Gi' or '512Mi'", bare_ok=True)
_parse_rate = _parser("request rate", RATE_UNITS, "'200/s' or '30rps'")
_parse_byte_rate_bytes = _parser("byte rate", BYTE_RATE_UNITS, "'5MB/s'")
_HOURLY_BARE = dict(PER_TIME_PRICE_UNITS, **{"": 1.0})
_parse_hourly = _parser("hourly price", _HOURLY_BARE, "'0.04/h' or 0.04", bare_ok=True)


def parse_size(value: Any) -> int:
    """Bytes as an int; a fractional byte count is an error."""
    result = _parse_size_float(value)
    if abs(result - round(result)) > 1e-6:
        raise UnitError(f"size {value!r} is not a whole number of bytes")
    return round(result)


def parse_rate(value: Any) -> float:
    """Requests per second; a bare number is read as per second (the usual convention)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise UnitError(f"request rate {value!r} must not be negative")
        return float(value)
    return _parse_rate(value)


def parse_byte_rate(value: Any) -> float:
    """Bytes per second; bits-per-second units are accepted and divided by 8."""
    if isinstance(value, str) and value.strip().endswith("bps"):
        return parse_bandwidth(value) / 8.0
    return _parse_byte_rate_bytes(value)


def parse_hourly_price(value: Any) -> float:
    return _parse_hourly(value)


def parse_fraction(value: Any) -> float:
    """``99.9%`` → 0.999; a bare number must already be a fraction in [0, 1]."""
    if isinstance(value, bool):
        raise UnitError(f"expected a percentage like '99.9%', got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text.endswith("%"):
            raise UnitError(f"cannot read {value!r} as a percentage; write it like '99.9%'")
        try:
            number = float(text[:-1]) / 100.0
        except ValueError:
            raise UnitError(
                f"cannot read {value!r} as a percentage; write it like '99.9%'"
            ) from None
    else:
        raise UnitError(f"expected a percentage like '99.9%', got {type(value).__name__}")
    if not 0.0 <= number <= 1.0:
        raise UnitError(f"{value!r} is outside 0%..100%")
    return number


def parse_money(value: Any) -> float:
    """A plain amount of money (``1200``, ``'$1200'``); never negative."""
    if isinstance(value, bool):
        raise UnitError(f"expected an amount of money, got {value!r}")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        number, unit = _split(value, "amount of money", "1200 or '$1200'")
        if unit:
            raise UnitError(f"unexpected unit {unit!r} in amount of money {value!r}")
    else:
        raise UnitError(f"expected an amount of money, got {type(value).__name__}")
    if number < 0 or not math.isfinite(number):
        raise UnitError(f"amount of money {value!r} must be a finite number >= 0")
    return number


def format_duration(seconds: float) -> str:
    """Seconds → the shortest readable form (``45ms``, ``1.5s``, ``2h``)."""
    if math.isinf(seconds):
        return "inf"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.6g}us"
    if seconds < 1.0:
        return f"{seconds * 1e3:.6g}ms"
    if seconds < 120:
        return f"{seconds:.6g}s"
    if seconds < 7200:
        return f"{seconds / 60:.6g}m"
    if seconds < 172800:
        return f"{seconds / 3600:.6g}h"
    return f"{seconds / 86400:.6g}d"


def format_size(num_bytes: float) -> str:
    for unit, factor in (("Ti", 2**40), ("Gi", 2**30), ("Mi", 2**20), ("Ki", 2**10)):
        if num_bytes >= factor and num_bytes % factor == 0:
            return f"{int(num_bytes // factor)}{unit}"
    return str(int(num_bytes))


def format_fraction(fraction: float) -> str:
    return f"{fraction * 100:.6g}%"


def _format_scaled(value: float, units: tuple[tuple[str, float], ...]) -> str:
    """``value`` in the largest unit it reaches (``units`` largest first); zero in the base unit."""
    if value == 0:
        return "0" + next(unit for unit, factor in units if factor == 1.0)
    for unit, factor in units:
        if abs(value) >= factor:
            return f"{value / factor:.12g}{unit}"
    unit, factor = units[-1]
    return f"{value / factor:.12g}{unit}"


_BANDWIDTH_SCALE = (("Gbps", 1e9), ("Mbps", 1e6), ("kbps", 1e3), ("bps", 1.0))
_BYTE_RATE_SCALE = (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3), ("B/s", 1.0))


def format_bandwidth(bits_per_second: float) -> str:
    return _format_scaled(bits_per_second, _BANDWIDTH_SCALE)


def format_byte_rate(bytes_per_second: float) -> str:
    return _format_scaled(bytes_per_second, _BYTE_RATE_SCALE)


def format_power(watts: float) -> str:
    return _format_scaled(watts, (("MW", 1e6), ("kW", 1e3), ("W", 1.0), ("mW", 1e-3)))


def format_energy(joules: float) -> str:
    return _format_scaled(joules, (("kJ", 1e3), ("J", 1.0), ("mJ", 1e-3), ("uJ", 1e-6)))


def format_rate(per_second: float) -> str:
    return f"{per_second:.12g}/s"


def format_price_per_gb(price: float) -> str:
    return f"{price:.12g}/GB"


def format_energy_price(price: float) -> str:
    return f"{price:.12g}/kWh"


def format_hourly_price(price: float) -> str:
    return f"{price:.12g}/h"


def _typed(parser: Callable[[Any], Any], fmt: Callable[[Any], Any] | None = None) -> Any:
    if fmt is None:
        return BeforeValidator(parser)
    return (BeforeValidator(parser), PlainSerializer(fmt, when_used="json"))


# Annotated types for pydantic models. Values are stored in internal units;
# every quantity whose parser rejects a bare number serialises back to a
# human form in JSON/YAML, so ``to_document()`` output loads again.
Duration = Annotated[float, *_typed(parse_duration, format_duration)]
Size = Annotated[int, *_typed(parse_size, format_size)]
Bandwidth = Annotated[float, *_typed(parse_bandwidth, format_bandwidth)]
ByteRate = Annotated[float, *_typed(parse_byte_rate, format_byte_rate)]
Rate = Annotated[float, *_typed(parse_rate, format_rate)]
PricePerGB = Annotated[float, *_typed(parse_price_per_gb, format_price_per_gb)]
EnergyPrice = Annotated[float, *_typed(parse_energy_price, format_energy_price)]
HourlyPrice = Annotated[float, *_typed(parse_hourly_price, format_hourly_price)]
Power = Annotated[float, *_typed(parse_power, format_power)]
Energy = Annotated[float, *_typed(parse_energy, format_energy)]
Fraction = Annotated[float, *_typed(parse_fraction, format_fraction)]
Cpu = Annotated[float, _typed(parse_cpu)]
Money = Annotated[float, _typed(parse_money)]
