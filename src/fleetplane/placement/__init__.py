"""Placement: decide where every workload runs, predict its latency and cost, and say why.

    from fleetplane.placement import plan
    result = plan(fleet)                 # PlanResult
    result.placement                     # the Placement resource (YAML via .to_document())
    result.complete                      # False when some workloads are unplaceable

The engine is a pipeline in the style of Nomad's scheduler — feasibility
(hard filters, each with a reason) → scoring (cost model + policy) → solve
(pluggable: ``fleetplane.placement.solvers``) → explain. docs/placement.md
describes each stage; docs/policy.md the CEL rules.
"""

from __future__ import annotations

from fleetplane.model.fleet import Fleet
from fleetplane.model.placement import Placement
from fleetplane.model.policy import PlacementPolicy

# Registers the solvers (greedy = greedy + improvement pass) before any plan runs.
from fleetplane.placement import solvers as solvers
from fleetplane.placement._internal.pipeline import PlanResult, Progress, default_policy, run
from fleetplane.placement._internal.rules import Locate

__all__ = ["PlanResult", "default_policy", "plan"]


def plan(
    fleet: Fleet,
    policy: PlacementPolicy | None = None,
    *,
    solver: str = "greedy",
    seed: int = 0,
    locate: Locate | None = None,
    progress: Progress | None = None,
    current: Placement | None = None,
    time_limit: float = 30.0,
    helper_process: bool = True,
) -> PlanResult:
    """Plan the whole fleet.

    ``policy`` overrides the fleet's own PlacementPolicy (the bundled default
    is used when there is neither). ``seed`` only breaks exact ties, so the
    same inputs and seed always give the same Placement. ``locate`` maps
    (kind, name, field path) to a source position for policy errors (the
    loader's ``SourceMap.locate``); ``progress(stage, done, total)`` is called
    as stages advance. Raises PolicyError for a rule that does not compile or
    fails, ValidationError for inputs the engine cannot use, and
    PlacementError if a solver ever returned a plan breaking a hard constraint.

    ``solver``: ``greedy``, ``exact`` (HiGHS MILP, never worse than greedy,
    stops after ``time_limit`` seconds and reports its gap) or ``auto``.
    ``current``: re-plan from this Placement — moves cost the policy's
    ``moveCost``, ``moveBudget`` caps them, pinned assignments and cordoned
    or draining sites are respected; ``placement.spec.changes`` is the diff.

    ``helper_process``: feasibility may fork one helper process to work out
    half of a big fleet's chunks (more than 2,048 workloads; only while no
    other thread runs and with two cores or more). The plan is the same
    either way; False keeps all the work in this process.
    """
    return run(
        fleet,
        policy,
        solver=solver,
        seed=seed,
        locate=locate,
        progress=progress,
        time_limit=time_limit,
        current=current,
        helper_process=helper_process,
    )
