"""The solve stage as a plug-in point: the contract every solver implements, and the registry.

A solver is ``Callable[[SolverInput], SolverOutput]`` registered by name in
``SOLVERS``; ``plan(fleet, solver=name)`` runs it between scoring and
verification. The candidate table it receives is documented in
``fleetplane.placement.candidates`` and docs/placement.md.

Registered here: ``greedy`` is the regret-ordered greedy followed by the
improvement pass (``_internal/improve.py``: relocate, ruin and recreate on
contested pools); ``exact`` and ``auto`` start from that plan. This module is
imported by ``fleetplane.placement``, so the registration holds for every plan.
"""

from fleetplane.placement._internal import improve
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

SOLVERS["greedy"] = improve.solve
