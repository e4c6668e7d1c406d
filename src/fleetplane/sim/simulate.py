"""The simulator's entry points: :func:`simulate` one scenario, :func:`sweep` a parameter."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from fleetplane.errors import SimulationError, ValidationError
from fleetplane.model.fleet import Fleet
from fleetplane.model.placement import Placement
from fleetplane.model.scenario import Scenario
from fleetplane.sim.aggregate import aggregate
from fleetplane.sim.build import build_model
from fleetplane.sim.checks import Locate, check_scenario
from fleetplane.sim.engine import Prepared, prepare, run_replication, trace_scale
from fleetplane.sim.metrics import RunMetrics, measure
from fleetplane.sim.result import SimulationResult

#: ``progress(done, total)``: called as the work advances (units are arbitrary).
Progress = Callable[[float, float], None]

#: Requests one replication may hold in memory, and what each one costs (measured peak,
#: the metrics' temporaries included): 20 M is about 6 GiB.
MAX_REQUESTS = 20_000_000
BYTES_PER_REQUEST = 300

#: Parameters ``sweep`` can vary, and what each one sets.
SWEEPABLE = {"demand": "multiplies the scenario's demandScale"}


def simulate(
    fleet: Fleet,
    placement: Placement,
    scenario: Scenario,
    *,
    seed: int | None = None,
    base_dir: Path | None = None,
    locate: Locate | None = None,
    progress: Progress | None = None,
) -> SimulationResult:
    """Simulate ``scenario`` over ``placement``; same inputs and seed, same result.

    ``seed`` overrides the scenario's; ``base_dir`` is where trace files are
    (the scenario file's directory); ``locate`` gives field positions for error
    messages (``LoadResult.sources.locate``). Invalid input raises
    :class:`~fleetplane.errors.ValidationError` before anything runs; a
    placement that does not fit the fleet raises
    :class:`~fleetplane.errors.SimulationError`.
    """
    checked = check_scenario(fleet, scenario, locate=locate, base_dir=base_dir)
    if seed is not None:
        scenario = _with_spec(scenario, seed=seed)
    started = time.perf_counter()
    model = build_model(fleet, placement, scenario)
    model.warnings[:0] = checked.warnings
    prep = prepare(model, checked.traces)
    _check_size(prep)
    spec = scenario.spec
    seeds = np.random.SeedSequence(spec.seed).spawn(spec.replications)
    runs: list[RunMetrics] = []
    for i, replication_seed in enumerate(seeds):
        requests = run_replication(prep, replication_seed)
        if progress is not None:
            progress(2 * i + 1, 2 * len(seeds))
        runs.append(measure(prep, requests))
        del requests
        if progress is not None:
            progress(2 * i + 2, 2 * len(seeds))
    return aggregate(prep, runs, spec.seed, time.perf_counter() - started)


def sweep(
    fleet: Fleet,
    placement: Placement,
    scenario: Scenario,
    parameter: str,
    values: Sequence[float],
    *,
    seed: int | None = None,
    base_dir: Path | None = None,
    locate: Locate | None = None,
    progress: Progress | None = None,
) -> list[SimulationResult]:
    """One simulation per value of ``parameter`` (see SWEEPABLE), same seed for all.

    The same seed gives every point the same random numbers where it can
    (common random numbers), so differences between points are mostly the
    parameter's effect, not noise.
    """
    if parameter not in SWEEPABLE:
        raise ValidationError(
            f"cannot sweep {parameter!r}; sweepable: "
            + ", ".join(f"{k} ({v})" for k, v in SWEEPABLE.items())
        )
    if not values or any(v <= 0 for v in values):
        raise ValidationError(f"sweep values for {parameter!r} must be > 0, got {list(values)}")
    results = []
    for i, value in enumerate(values):
        point = _with_spec(scenario, demand_scale=scenario.spec.demand_scale * value)

        def step(done: float, total: float, i: int = i) -> None:
            if progress is not None:
                progress(i + done / total, len(values))

        results.append(
            simulate(
                fleet, placement, point, seed=seed, base_dir=base_dir, locate=locate, progress=step
            )
        )
    return results


def expected_requests(prep: Prepared) -> float:
    """Requests one replication is expected to generate (before faults silence any source)."""
    spec = prep.model.scenario.spec
    total = 0.0
    for stream, rate in zip(prep.model.streams, prep.intensities, strict=True):
        if rate is not None:
            total += rate.expected
        else:
            times = prep.traces[stream.source.name]
            factor = stream.share * spec.demand_scale * trace_scale(prep.model, stream.source.name)
            total += float(np.count_nonzero(times < spec.duration)) * factor
    return total


def _check_size(prep: Prepared) -> None:
    """Refuse, before allocating anything, a replication too big for memory."""
    expected = expected_requests(prep)
    if expected > MAX_REQUESTS:
        raise SimulationError(
            f"scenario {prep.model.scenario.name!r} would generate about {expected:,.0f} requests "
            f"per replication (~{expected * BYTES_PER_REQUEST / 2**30:.0f} GiB of memory); "
            f"the limit is {MAX_REQUESTS:,}: shorten the duration or lower demandScale "
            "(several replications of a shorter run measure the same steady state)"
        )


def _with_spec(scenario: Scenario, **changes: object) -> Scenario:
    spec = scenario.spec.model_copy(update=changes)
    return scenario.model_copy(update={"spec": spec})
