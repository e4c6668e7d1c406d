"""Errors a user can hit, as a typed hierarchy.

Every error says *what* went wrong, *where* (file:line:column and field path
when there is one) and, when we know it, *how to fix it*. The CLI prints
``str(error)`` without a traceback; library callers can inspect the fields.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class SourcePosition:
    """A place in a source file; line and column are 1-based like editors show them."""

    file: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.file
        if self.column is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.column}"


class FleetplaneError(Exception):
    """Base class of every error fleetplane raises on purpose."""

    exit_code = 1


@dataclass
class Problem:
    """One finding about the input: what, where, and how to fix it."""

    message: str
    position: SourcePosition | None = None
    field_path: str | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = str(self.position) if self.position else ""
        if self.field_path:
            where = f"{where} {self.field_path}" if where else self.field_path
        text = f"{where}: {self.message}" if where else self.message
        if self.hint:
            text += f" ({self.hint})"
        return text


class ValidationError(FleetplaneError):
    """Invalid input: one or more problems found while reading or checking it."""

    def __init__(self, problems: Iterable[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__(self._render())

    def _render(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        lines = [f"{len(self.problems)} problems:"]
        lines += [f"  {p}" for p in self.problems]
        return "\n".join(lines)


class UnitError(ValueError):
    """A quantity that cannot be parsed; raised inside model validation.

    Subclasses ValueError so pydantic turns it into a field error that the
    loader then places at file:line:column.
    """


class PolicyError(FleetplaneError):
    """A CEL rule that does not compile or fails while evaluating."""


class PlacementError(FleetplaneError):
    """The placement engine could not produce a plan at all (not: some workloads unplaceable)."""


class SimulationError(FleetplaneError):
    """The simulator cannot run the given scenario."""


class IncompleteResult(FleetplaneError):
    """A result was produced but is incomplete (e.g. unplaceable workloads); exit code 2."""

    exit_code = 2


def did_you_mean(name: str, candidates: Sequence[str]) -> str | None:
    """A hint naming the closest known names, or None when nothing is close."""
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=3, cutoff=0.6)
    if not close:
        return None
    return "did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
