"""The solve stage as a plug-in point: the contract every solver implements, and the registry.

A solver is ``Callable[[SolverInput], SolverOutput]`` registered by name in
``SOLVERS``; ``plan(fleet, solver=name)`` runs it between scoring and
verification. The candidate table it receives is documented in
``fleetplane.placement.candidates`` and docs/placement.md.
"""

from fleetplane.placement._internal.candidates import Allocation, Candidates
from fleetplane.placement._internal.capacity import CapacityState, Demand
from fleetplane.placement._internal.pipeline import SOLVERS
from fleetplane.placement._internal.scoring import Scorer
from fleetplane.placement._internal.sizing import Request, conservative, exact
from fleetplane.placement._internal.solve import (
    SPREAD_AVAILABILITY,
    Solver,
    SolverInput,
    SolverOutput,
    Unplaced,
    needs_spread,
)

__all__ = [
    "SOLVERS",
    "SPREAD_AVAILABILITY",
    "Allocation",
    "Candidates",
    "CapacityState",
    "Demand",
    "Request",
    "Scorer",
    "Solver",
    "SolverInput",
    "SolverOutput",
    "Unplaced",
    "conservative",
    "exact",
    "needs_spread",
]
