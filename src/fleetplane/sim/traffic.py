"""Request arrival times of each stream: Poisson, diurnal, bursts, or a replayed trace.

Generated traffic is a Poisson process whose rate is piecewise constant
(hourly diurnal multipliers, burst windows). It is drawn exactly, without
thinning, by a time change: unit-rate arrivals (cumulative sums of
exponentials, so already sorted) are mapped through the inverse of the
cumulative intensity Λ(t), which is piecewise linear and inverted with one
``np.interp``. Cost: one exponential draw per request.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fleetplane.errors import Problem, SourcePosition, ValidationError
from fleetplane.model.infrastructure import DataSource
from fleetplane.model.scenario import ScenarioSpec, TrafficSpec

FloatArray = npt.NDArray[np.float64]

HOUR = 3600.0
DAY = 86400.0


@dataclass(frozen=True)
class Intensity:
    """A piecewise-constant rate: ``rates[i]`` requests/s on ``[edges[i], edges[i+1])``."""

    edges: FloatArray
    rates: FloatArray

    @property
    def cumulative(self) -> FloatArray:
        return np.concatenate([[0.0], np.cumsum(self.rates * np.diff(self.edges))])

    @property
    def expected(self) -> float:
        return float(self.cumulative[-1])


def intensity(
    source: DataSource, traffic: TrafficSpec | None, spec: ScenarioSpec, share: float
) -> Intensity:
    """The rate of one stream over the scenario: peak rate × share × scales × shape."""
    peak = source.spec.request_rate
    scale = spec.demand_scale * share
    pattern: str = spec.pattern
    diurnal: list[float] | None = source.spec.diurnal
    bursts = []
    if traffic is not None:
        peak = traffic.rate if traffic.rate is not None else peak
        scale *= traffic.scale
        pattern = traffic.pattern
        diurnal = traffic.diurnal or source.spec.diurnal
        bursts = traffic.bursts
    edges = {0.0, spec.duration}
    if pattern == "diurnal" and diurnal is not None:
        first = HOUR - math.fmod(spec.time_of_day, HOUR)
        edges.update(np.arange(first, spec.duration, HOUR).tolist())
    for burst in bursts:
        edges.update(t for t in (burst.at, burst.at + burst.duration) if 0 < t < spec.duration)
    grid = np.array(sorted(edges))
    middle = 0.5 * (grid[:-1] + grid[1:])
    rates = np.full(middle.shape, peak * scale)
    if pattern == "diurnal" and diurnal is not None:
        hour = np.floor(np.fmod(middle + spec.time_of_day, DAY) / HOUR).astype(np.int64)
        rates *= np.asarray(diurnal)[hour]
    for burst in bursts:
        inside = (middle >= burst.at) & (middle < burst.at + burst.duration)
        rates[inside] *= burst.multiplier
    return Intensity(grid, rates)


def poisson_arrivals(rng: np.random.Generator, rate: Intensity) -> FloatArray:
    """Sorted arrival times of a Poisson process with the given piecewise-constant rate."""
    total = rate.expected
    if total <= 0.0:
        return np.zeros(0)
    unit = np.cumsum(rng.exponential(1.0, _batch(total)))
    while unit[-1] < total:
        more = np.cumsum(rng.exponential(1.0, _batch(total - unit[-1]))) + unit[-1]
        unit = np.concatenate([unit, more])
    unit = unit[: np.searchsorted(unit, total)]
    # Where the rate is 0, Λ is flat and no unit arrival can land inside.
    return np.interp(unit, rate.cumulative, rate.edges)


def _batch(expected: float) -> int:
    """Enough draws to cover ``expected`` arrivals almost always in one go (10 sigma)."""
    return int(expected + 10.0 * math.sqrt(expected) + 16)


def replay_trace(
    rng: np.random.Generator, times: FloatArray, factor: float, duration: float
) -> FloatArray:
    """A trace scaled by ``factor``: thinned when below 1, copied when above.

    Each recorded arrival is kept ``floor(factor)`` times plus once more with
    probability ``frac(factor)``. Extra copies are shifted by a uniform offset
    up to the trace's mean gap, so they do not arrive as artificial batches.
    """
    times = times[times < duration]
    whole, frac = divmod(factor, 1.0)
    copies = np.full(times.shape, int(whole), dtype=np.int64)
    if frac > 0.0:
        copies += rng.random(times.shape[0]) < frac
    out = np.repeat(times, copies)
    # 0 for the first copy of each recorded arrival, 1, 2, ... for the extra ones.
    rank = np.arange(out.shape[0]) - np.repeat(np.cumsum(copies) - copies, copies)
    extra = rank > 0
    if times.shape[0] > 1 and np.any(extra):
        gap = (times[-1] - times[0]) / (times.shape[0] - 1)
        out[extra] += rng.random(int(extra.sum())) * gap
    out = out[out < duration]
    return np.sort(out, kind="stable")


def read_trace(path: Path) -> FloatArray:
    """Arrival timestamps (seconds from the start) from the first column of a CSV file.

    A header line and ``#`` comments are allowed. Problems point at file:line.
    """
    problems: list[Problem] = []
    values: list[float] = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            for line_no, row in enumerate(csv.reader(handle), start=1):
                if not row or not row[0].strip() or row[0].lstrip().startswith("#"):
                    continue
                cell = row[0].strip()
                try:
                    value = float(cell)
                except ValueError:
                    if line_no == 1 and not values:
                        continue  # a header line
                    problems.append(_trace_problem(path, line_no, f"{cell!r} is not a number"))
                    continue
                if not math.isfinite(value) or value < 0:
                    problems.append(
                        _trace_problem(path, line_no, f"timestamp {cell} must be >= 0 seconds")
                    )
                    continue
                values.append(value)
    except (OSError, UnicodeDecodeError) as error:
        raise ValidationError(
            Problem(f"cannot read trace: {error}", SourcePosition(str(path)))
        ) from None
    if problems:
        raise ValidationError(problems[:20])
    if not values:
        raise ValidationError(
            Problem(
                "the trace holds no timestamps",
                SourcePosition(str(path)),
                hint="one arrival per line, seconds from the start of the scenario",
            )
        )
    return np.sort(np.asarray(values, dtype=np.float64), kind="stable")


def _trace_problem(path: Path, line: int, message: str) -> Problem:
    return Problem(
        message,
        SourcePosition(str(path), line, 1),
        hint="each line holds one arrival time in seconds from the start, e.g. 12.5",
    )
