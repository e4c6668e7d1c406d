"""Check a scenario against the fleet before anything runs.

The loader already checks each field on its own and the names a scenario
mentions; these are the checks that need both the scenario and the fleet (a
diurnal pattern needs a shape from somewhere, a trace file must be readable).
Every problem names the scenario field (file:line:column when the scenario
came from a file) and how to fix it; they are all reported together.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from fleetplane.errors import Problem, SourcePosition, ValidationError, did_you_mean
from fleetplane.model.fleet import Fleet
from fleetplane.model.scenario import Scenario

FloatArray = npt.NDArray[np.float64]
Loc = tuple[str | int, ...]
Locate = Callable[[str, str, Loc], SourcePosition | None]


@dataclass
class CheckedScenario:
    traces: dict[str, FloatArray] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def check_scenario(
    fleet: Fleet,
    scenario: Scenario,
    *,
    locate: Locate | None = None,
    base_dir: Path | None = None,
) -> CheckedScenario:
    """Traces read and warnings collected; ValidationError listing every problem otherwise."""
    checker = _Checker(fleet, scenario, locate, base_dir or Path("."))
    checker.traffic()
    checker.faults()
    checker.service_times()
    if checker.problems:
        raise ValidationError(checker.problems)
    return checker.result


class _Checker:
    def __init__(
        self, fleet: Fleet, scenario: Scenario, locate: Locate | None, base_dir: Path
    ) -> None:
        self.fleet = fleet
        self.scenario = scenario
        self.locate = locate
        self.base_dir = base_dir
        self.problems: list[Problem] = []
        self.result = CheckedScenario()

    def traffic(self) -> None:
        spec = self.scenario.spec
        demanded = {d.source for w in self.fleet.workloads.values() for d in w.spec.demand}
        for i, traffic in enumerate(spec.traffic):
            base: Loc = ("spec", "traffic", i)
            source = self.fleet.data_sources.get(traffic.source)
            if source is None:
                self.unknown((*base, "source"), "DataSource", traffic.source)
                continue
            if traffic.source not in demanded:
                self.result.warnings.append(
                    f"traffic[{i}]: no workload serves DataSource {traffic.source!r}; "
                    "its traffic is not simulated"
                )
            if traffic.pattern == "diurnal" and not (traffic.diurnal or source.spec.diurnal):
                self.problem(
                    (*base, "pattern"),
                    f"pattern 'diurnal' needs a daily shape, but DataSource "
                    f"{traffic.source!r} has no diurnal and the traffic entry gives none",
                    "add diurnal: [24 hourly fractions of the peak rate] here or on the DataSource",
                )
            if traffic.pattern == "trace" and traffic.trace is not None:
                self.trace(i, traffic.source, traffic.trace)
            for j, burst in enumerate(traffic.bursts):
                if burst.at >= spec.duration:
                    self.result.warnings.append(
                        f"traffic[{i}].bursts[{j}] starts after the scenario ends; it has no effect"
                    )

    def trace(self, i: int, source: str, name: str) -> None:
        from fleetplane.sim.traffic import read_trace

        path = self.base_dir / name
        if not path.is_file():
            self.problem(
                ("spec", "traffic", i, "trace"),
                f"trace file {str(path)!r} does not exist",
                "trace paths are relative to the scenario file's directory",
            )
            return
        try:
            self.result.traces[source] = read_trace(path)
        except ValidationError as error:
            where = self.position(("spec", "traffic", i, "trace"))
            for problem in error.problems:
                problem.field_path = problem.field_path or f"spec.traffic[{i}].trace"
                if where is not None:
                    problem.hint = f"{problem.hint + '; ' if problem.hint else ''}named at {where}"
                self.problems.append(problem)

    def faults(self) -> None:
        spec = self.scenario.spec
        for i, fault in enumerate(spec.faults):
            base: Loc = ("spec", "faults", i)
            for key, kind, name in (
                ("site", "Site", fault.site),
                ("peer", "Site", fault.peer),
                ("link", "Link", fault.link),
            ):
                if name is not None and name not in self.fleet.collection(kind):
                    self.unknown((*base, key), kind, name)
            if fault.at >= spec.duration:
                self.result.warnings.append(
                    f"faults[{i}] ({fault.type}) starts after the scenario ends; it has no effect"
                )

    def service_times(self) -> None:
        """Service times the simulator will sample must be ones the latency model accepts."""
        from fleetplane.latency.distributions import ServiceTime

        for workload in self.fleet.workloads.values():
            for i, profile in enumerate(workload.spec.profiles):
                spec = profile.service_time
                if spec is None:
                    continue
                try:
                    ServiceTime(spec.mean, spec.cv, spec.distribution)
                except ValueError as error:
                    loc: Loc = ("spec", "profiles", i, "serviceTime")
                    where = self.locate("Workload", workload.name, loc) if self.locate else None
                    self.problems.append(
                        Problem(
                            f"Workload {workload.name!r}, profile {profile.hardware!r}: {error}",
                            where or self.fleet.position_of("Workload", workload.name),
                            _render(loc),
                            "a deterministic time has cv 0 and an exponential one cv 1; "
                            "for anything else use lognormal, gamma or auto",
                        )
                    )

    def unknown(self, loc: Loc, kind: str, name: str) -> None:
        known = list(self.fleet.collection(kind))
        self.problem(
            loc,
            f"Scenario {self.scenario.name!r} refers to unknown {kind} {name!r}",
            did_you_mean(name, known) or f"defined {kind}s: {', '.join(known[:5]) or 'none'}",
        )

    def position(self, loc: Loc) -> SourcePosition | None:
        where = self.locate("Scenario", self.scenario.name, loc) if self.locate else None
        return where or self.fleet.position_of("Scenario", self.scenario.name)

    def problem(self, loc: Loc, message: str, hint: str) -> None:
        self.problems.append(Problem(message, self.position(loc), _render(loc), hint))


def _render(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
