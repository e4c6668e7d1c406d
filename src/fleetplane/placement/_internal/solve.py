"""The solve stage's contract: what a solver receives and what it must return.

A solver is a function ``SolverInput -> SolverOutput``. It sees only the
candidate table (candidates.py), the objective per candidate (scoring.py),
replica sizing (sizing.py) and a fresh :class:`CapacityState`, and returns
allocations per workload. It must pack every replica it keeps through the
capacity state (``CapacityState.place``), so that node-level fits and power
budgets are accounted the same way for every solver; ``verify`` re-checks
all of it afterwards and refuses a plan that breaks a hard constraint.

Register a solver by name in ``SOLVERS`` (``fleetplane.placement.solvers``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fleetplane.placement._internal.candidates import Allocation, Candidates
from fleetplane.placement._internal.capacity import CapacityState
from fleetplane.placement._internal.fleet_index import FloatArray, IntArray
from fleetplane.placement._internal.scoring import Scorer

if TYPE_CHECKING:
    from fleetplane.placement._internal.moves import MoveTerms

# Availability at or above this needs replicas in two failure domains.
SPREAD_AVAILABILITY = 0.999

ProgressFn = Callable[[int, int], None]


@dataclass
class SolverInput:
    table: list[Candidates]  # one entry per workload, sorted by name
    scorers: list[Scorer]
    capacity: CapacityState
    domain_names: tuple[str, ...]
    seed: int
    full_replicas: list[
        IntArray
    ]  # per workload: replicas per candidate serving all its sources there
    progress: ProgressFn | None = None
    time_limit: float = 30.0  # seconds, for solvers that search (exact)
    moves: MoveTerms | None = None  # re-planning from a current plan (moves.py)


@dataclass(frozen=True)
class Unplaced:
    """Why a solver could not place a workload that had candidates.

    ``code``: ``sources`` (some data source has no candidate), ``capacity``
    (candidates exist but are full), ``availability`` (no second failure
    domain), ``replicas`` (needs more replicas than allowed everywhere).
    """

    code: str
    detail: str
    source: int | None = None


@dataclass
class SolverOutput:
    allocations: dict[str, list[Allocation]] = field(default_factory=dict)
    unplaced: dict[str, Unplaced] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)  # workloads in the order they were committed
    status: str = "ok"
    optimality_gap: float | None = None
    objective: float = 0.0
    bound: float | None = None  # a proven lower bound on the objective, when a solver has one


Solver = Callable[[SolverInput], SolverOutput]


def needs_spread(cands: Candidates) -> bool:
    return cands.view.availability >= SPREAD_AVAILABILITY


def shares_for(group: FloatArray, spread: bool) -> FloatArray:
    """Normal-operation share of each source at one allocation (half each for a spread pair)."""
    return group * (0.5 if spread else 1.0)
