"""The pipeline: feasibility → scoring → solve → trim → verify → explain → Placement.

Stages hand each other plain data (the candidate table, allocations), so a
solver can be swapped without touching the rest, and every stage can be
timed on its own (``PlanResult.timings``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from fleetplane import __version__
from fleetplane.errors import ValidationError
from fleetplane.model.fleet import Fleet
from fleetplane.model.placement import (
    Assignment,
    CostBreakdown,
    LatencyPrediction,
    Placement,
    PlacementSpec,
    SolverInfo,
    Unplaceable,
    WorkloadPlacement,
)
from fleetplane.model.policy import PlacementPolicy
from fleetplane.model.workload import PERCENTILES
from fleetplane.placement._internal import (
    explain,
    feasibility,
    feasibility_fork,
    prediction,
    replan,
    sizing,
)
from fleetplane.placement._internal.candidates import Allocation, Candidates
from fleetplane.placement._internal.capacity import CapacityState
from fleetplane.placement._internal.context import PlanContext
from fleetplane.placement._internal.exact import solve as exact_solve
from fleetplane.placement._internal.exact import solve_auto
from fleetplane.placement._internal.greedy import solve as greedy_solve
from fleetplane.placement._internal.long_lived import LongLivedObjects
from fleetplane.placement._internal.moves import open_cordoned, operator_controls
from fleetplane.placement._internal.rules import Locate, compile_policy
from fleetplane.placement._internal.scoring import breakdowns, build_scorer
from fleetplane.placement._internal.solve import Solver, SolverInput, SolverOutput
from fleetplane.placement._internal.verify import SourceLatency, report_latencies, verify
from fleetplane.placement._internal.workload_view import WorkloadView

SOLVERS: dict[str, Solver] = {"greedy": greedy_solve, "exact": exact_solve, "auto": solve_auto}

# Feasibility screens this many workloads, decides their latency in one batch
# and builds their candidate tables before the next: the per-path arrays of
# screening then only ever exist for one chunk (a 20,000-workload fleet
# otherwise holds gigabytes of them at once), while each exact batch stays
# large. The exact budget applies per chunk, so a chunk's tables are the same
# whichever process works them out (feasibility_fork.py).
FEASIBILITY_CHUNK = 2048
# Workloads explained between two freezes of what the Placement keeps (long_lived.py).
_EXPLAIN_SETTLE_EVERY = 2048

# Stage names reported to the progress callback, in order.
Progress = Callable[[str, int, int], None]


@dataclass
class PlanResult:
    """A plan and what it took to make it."""

    placement: Placement
    explanations: dict[str, explain.WorkloadExplanation]
    candidates: dict[str, Candidates]
    allocations: dict[str, list[Allocation]]
    timings: dict[str, float] = field(default_factory=dict)
    # The same stages in CPU seconds of this process (all its threads) and of the
    # feasibility helper: on a shared machine wall time also counts waiting for a core.
    cpu_timings: dict[str, float] = field(default_factory=dict)
    cel_evaluations: int = 0
    cel_lookups: int = 0
    # Whether feasibility forked a helper process (feasibility_fork.py).
    feasibility_helper: bool = False
    # The indexed fleet the plan was made on: explanations diagnose rejected sites against it.
    context: PlanContext | None = None

    @property
    def unplaceable(self) -> list[Unplaceable]:
        return list(self.placement.spec.unplaceable)

    @property
    def complete(self) -> bool:
        return not self.placement.spec.unplaceable


def default_policy() -> PlacementPolicy:
    """The bundled policy (default_policy.yaml), used when a fleet has none."""
    from importlib.resources import files

    from fleetplane.model.loader import load_documents

    text = files("fleetplane.placement").joinpath("default_policy.yaml").read_text(encoding="utf-8")
    fleet = load_documents(text, "fleetplane/placement/default_policy.yaml", references=False)
    return next(iter(fleet.policies.values()))


def choose_policy(fleet: Fleet, policy: PlacementPolicy | None) -> PlacementPolicy:
    if policy is not None:
        return policy
    if not fleet.policies:
        return default_policy()
    if len(fleet.policies) == 1:
        return next(iter(fleet.policies.values()))
    names = ", ".join(sorted(fleet.policies))
    raise ValidationError(
        f"the fleet has {len(fleet.policies)} PlacementPolicies ({names}); "
        "keep one, or choose one with --policy FILE"
    )


def _full_star_replicas(table: list[Candidates]) -> list[np.ndarray]:
    """Per workload and candidate: replicas to serve every source it may serve (batched).

    The closed-form bound first (then tightened with the real Erlang-C factor);
    exact quantiles only where the bound cannot decide, all in one batch — and
    beyond ``prediction.EXACT_BUDGET`` only for candidates serving a source no
    bound-sized candidate serves (the others stay unsized and unused).
    """
    requests = []
    for cands in table:
        groups = (
            cands.source_ok if len(cands.view.sources) else np.zeros((0, cands.size), dtype=bool)
        )
        load = sizing.design_rates(cands) @ groups if groups.shape[0] else np.zeros(cands.size)
        requests.append(sizing.Request(cands, np.arange(cands.size), groups, load))
    found = sizing.tighten(requests, sizing.conservative(requests))
    needed = sum(
        int(req.groups[:, n == sizing.UNSIZEABLE].sum()) * len(req.cands.view.targets)
        for req, n in zip(requests, found, strict=True)
    )
    retry = []
    for r, (req, n) in enumerate(zip(requests, found, strict=True)):
        unsized = n == sizing.UNSIZEABLE
        if needed > prediction.EXACT_BUDGET and req.groups.shape[0]:
            # Beyond the exact budget, only candidates some source cannot do without.
            covered = np.asarray(req.groups[:, ~unsized].any(axis=1), dtype=bool)
            unsized &= (req.groups & ~covered[:, None]).any(axis=0)
        bad = np.flatnonzero(unsized)
        if bad.size:
            retry.append(
                (r, bad, sizing.Request(req.cands, req.idx[bad], req.groups[:, bad], req.load[bad]))
            )
    if retry:
        exact = sizing.exact([req for _, _, req in retry])
        for (r, bad, _), n in zip(retry, exact, strict=True):
            found[r][bad] = n
    return found


def _second_chance(
    ctx: PlanContext,
    table_list: list[Candidates],
    output: SolverOutput,
    capacity: CapacityState,
    solve_fn: Solver,
    seed: int,
    time_limit: float,
) -> list[Candidates]:
    """Solve unplaced workloads again on their whole candidate tables, in the capacity left.

    Tables are capped to the cheapest rows (feasibility.CANDIDATES_PER_SOURCE);
    when every row kept is full, a dearer row beyond the cap may still have
    room. Those workloads get their uncapped table and one more solve, so an
    unplaceable verdict is always about every feasible pool. Returns the table
    list with the rebuilt tables in place (allocations index into them).
    """
    retry = [c.view for c in table_list if c.view.name in output.unplaced and c.beyond_cap]
    if not retry:
        return table_list
    screened = feasibility.screen_many(ctx, retry)
    feasibility.resolve_latency(screened)
    rebuilt = [feasibility.finish(ctx, s, capped=False) for s in screened]
    again = solve_fn(
        SolverInput(
            rebuilt,
            [build_scorer(c, ctx.objective) for c in rebuilt],
            capacity,
            ctx.domain_names,
            seed,
            _full_star_replicas(rebuilt),
            time_limit=time_limit,
        )
    )
    for name, allocs in again.allocations.items():
        del output.unplaced[name]
        output.allocations[name] = allocs
        output.order.append(name)
    output.unplaced.update(again.unplaced)
    output.objective += again.objective
    by_name = {c.view.name: c for c in rebuilt}
    return [by_name.get(c.view.name, c) for c in table_list]


def _trim(
    table: dict[str, Candidates], allocations: dict[str, list[Allocation]], capacity: CapacityState
) -> dict[str, list[Allocation]]:
    """Cut allocations to the fewest replicas shown to meet their targets; free the rest.

    The bound (with the real Erlang-C factor) trims first. Then exact
    quantiles find the true minimum — for every allocation while that fits
    the exact budget, otherwise only for counts the bound cannot prove
    (sized exactly, or inherited from a larger star by the solver).
    """
    keys: list[tuple[str, int]] = []
    requests = []
    counts = []
    for name in sorted(allocations):
        cands = table[name]
        if cands.view.is_job or not cands.view.targets:
            continue
        rates = sizing.design_rates(cands)
        for i, alloc in enumerate(allocations[name]):
            group = np.array(alloc.design_shares, dtype=float)[:, None] > 0
            requests.append(
                sizing.Request(
                    cands,
                    np.array([alloc.candidate]),
                    group,
                    np.array([float(rates @ group[:, 0])]),
                )
            )
            counts.append(np.array([alloc.replicas]))
            keys.append((name, i))
    if not requests:
        return allocations
    tightened = sizing.tighten(requests, counts)
    paths = sum(int(req.groups.sum()) * len(req.cands.view.targets) for req in requests)
    if paths <= prediction.EXACT_BUDGET:
        unproven = list(range(len(requests)))
    else:
        proofs = sizing.proven(requests, tightened)
        unproven = [r for r, ok in enumerate(proofs) if not bool(ok[0])]
    if unproven:
        exact = sizing.exact([requests[r] for r in unproven], [tightened[r] for r in unproven])
        for r, n in zip(unproven, exact, strict=True):
            if int(n[0]) > 0:
                tightened[r] = n
    trimmed = {name: list(allocs) for name, allocs in allocations.items()}
    for (name, i), n in zip(keys, tightened, strict=True):
        alloc = trimmed[name][i]
        keep = int(n[0])
        if keep <= 0 or keep >= alloc.replicas:
            continue
        surplus = alloc.replicas - keep
        nodes = list(alloc.nodes)
        freed: list[tuple[int, int]] = []
        while surplus:
            node, count = nodes[-1]
            take = min(count, surplus)
            freed.append((node, take))
            surplus -= take
            if take == count:
                nodes.pop()
            else:
                nodes[-1] = (node, count - take)
        cands = table[name]
        capacity.release(int(cands.row[alloc.candidate]), freed, cands.demand(alloc.candidate))
        trimmed[name][i] = Allocation(
            alloc.candidate, keep, alloc.shares, alloc.design_shares, tuple(nodes), alloc.weight
        )
    return trimmed


def _report_levels(table: dict[str, Candidates]) -> dict[str, tuple[float, ...]]:
    """Percentiles reported per workload: p50, p99 and its SLO's other levels."""
    return {
        name: tuple(sorted({q for q, _ in cands.view.targets} | {0.5, 0.99}))
        for name, cands in table.items()
        if cands.view.targets
    }


# Read once: ``model_fields`` is a slow descriptor in pydantic 2.11+ (per access).
_PREDICTION_FIELDS = frozenset(LatencyPrediction.model_fields)


def _predicted(levels: tuple[float, ...], measured: list[SourceLatency]) -> LatencyPrediction:
    """The slowest reported path's value at each level (the numbers the SLO hinges on)."""
    worst = [max(m.values[i] for m in measured) for i in range(len(levels))]
    fields = {
        key: value
        for key, q in PERCENTILES.items()
        for lv, value in zip(levels, worst, strict=True)
        if lv == q and key in _PREDICTION_FIELDS
    }
    return LatencyPrediction(**fields)


def _name(fleet: Fleet) -> str:
    base = re.sub(r"[^a-z0-9.-]+", "-", fleet.name.lower()).strip("-.") or "fleet"
    return f"{base}-plan"[:253]


def run(
    fleet: Fleet,
    policy: PlacementPolicy | None = None,
    *,
    solver: str = "greedy",
    seed: int = 0,
    locate: Locate | None = None,
    progress: Progress | None = None,
    cel_cache: bool = True,
    time_limit: float = 30.0,
    current: Placement | None = None,
    helper_process: bool = True,
) -> PlanResult:
    """Plan ``fleet``; ``helper_process`` lets feasibility fork a helper (feasibility_fork)."""
    if solver not in SOLVERS:
        raise ValidationError(
            f"unknown solver {solver!r}; choose one of {', '.join(sorted(SOLVERS))}"
        )
    # What the plan is given and what each stage hands on live to its end: see long_lived.py.
    with LongLivedObjects() as long_lived:
        args = (fleet, policy, solver, seed, locate, progress, cel_cache, time_limit, current)
        return _run(*args, helper_process, long_lived)


def _cpu_seconds() -> float:
    """CPU time of this process and of the child processes it has waited for.

    The feasibility helper's time counts once it has exited, at the end of its stage.
    """
    spent = os.times()
    return time.process_time() + spent.children_user + spent.children_system


def _run(
    fleet: Fleet,
    policy: PlacementPolicy | None,
    solver: str,
    seed: int,
    locate: Locate | None,
    progress: Progress | None,
    cel_cache: bool,
    time_limit: float,
    current: Placement | None,
    helper: bool,
    long_lived: LongLivedObjects,
) -> PlanResult:
    timings: dict[str, float] = {}
    cpu_timings: dict[str, float] = {}
    clock = time.perf_counter()
    cpu_clock = _cpu_seconds()

    def lap(stage: str) -> None:
        nonlocal clock, cpu_clock
        now, cpu_now = time.perf_counter(), _cpu_seconds()
        timings[stage] = timings.get(stage, 0.0) + now - clock
        cpu_timings[stage] = cpu_timings.get(stage, 0.0) + cpu_now - cpu_clock
        clock, cpu_clock = now, cpu_now

    chosen = choose_policy(fleet, policy)
    compiled = compile_policy(chosen, locate)
    fleet = operator_controls(fleet)
    cordoned: set[str] = set()
    if current is not None:
        fleet, cordoned = open_cordoned(fleet)
    ctx = PlanContext.build(fleet, compiled, cel_cache=cel_cache)
    names = sorted(fleet.workloads)
    views = [ctx.view(n) for n in names]
    long_lived.settle()
    lap("index")

    def feasible(chunk: Sequence[WorkloadView]) -> list[Candidates]:
        screened = feasibility.screen_many(ctx, chunk)
        feasibility.resolve_latency(screened)
        found = [feasibility.finish(ctx, s) for s in screened]
        del screened
        long_lived.settle()
        return found

    chunks = [views[at : at + FEASIBILITY_CHUNK] for at in range(0, len(views), FEASIBILITY_CHUNK)]
    forked = helper and len(chunks) > 1 and feasibility_fork.helper_allowed()
    table_list = feasibility_fork.tables(
        chunks,
        feasible,
        ctx.rules.stats,
        helper=forked,
        progress=(lambda done: progress("feasibility", done, len(views))) if progress else None,
    )
    lap("feasibility")

    scorers = [build_scorer(c, ctx.objective) for c in table_list]
    full = _full_star_replicas(table_list)
    long_lived.settle()
    lap("scoring")

    capacity = CapacityState(ctx.index)
    solve_progress = (lambda done, total: progress("solve", done, total)) if progress else None
    moves = (
        replan.terms(ctx, table_list, scorers, current, chosen, cordoned, solver != "greedy")
        if current is not None
        else None
    )
    # Re-planning always runs the MILP (exact.py): it is what weighs moves against gains.
    solve_fn = SOLVERS[solver] if moves is None else exact_solve
    output: SolverOutput = solve_fn(
        SolverInput(
            table_list,
            scorers,
            capacity,
            ctx.domain_names,
            seed,
            full,
            solve_progress,
            time_limit=time_limit,
            moves=moves,
        )
    )
    if moves is None:
        table_list = _second_chance(ctx, table_list, output, capacity, solve_fn, seed, time_limit)
    lap("solve")

    table = {c.view.name: c for c in table_list}
    allocations = _trim(table, output.allocations, capacity)
    lap("trim")

    paths = verify(ctx, table, allocations)
    lap("verify")
    latencies = report_latencies(paths, table, _report_levels(table), prediction.EXACT_BUDGET)

    placement, explanations = _document(
        ctx, fleet, chosen, table, allocations, output, latencies, solver, seed, long_lived
    )
    solver_info = placement.spec.solver.model_copy(
        update={
            "time_seconds": timings["solve"],
            "time_limit": time_limit if solver != "greedy" or moves else None,
        }
    )
    placement = placement.model_copy(
        update={"spec": placement.spec.model_copy(update={"solver": solver_info})}
    )
    if current is not None and moves is not None:
        by_name = {s.cands.view.name: s for s in scorers}
        placement = replan.annotate(placement, current, moves, table, by_name, allocations)
    lap("explain")
    return PlanResult(
        placement=placement,
        explanations=explanations,
        candidates=table,
        allocations=allocations,
        timings=timings,
        cpu_timings=cpu_timings,
        cel_evaluations=ctx.rules.stats.evaluations,
        cel_lookups=ctx.rules.stats.lookups,
        feasibility_helper=forked,
        context=ctx,
    )


def _document(
    ctx: PlanContext,
    fleet: Fleet,
    policy: PlacementPolicy,
    table: dict[str, Candidates],
    allocations: dict[str, list[Allocation]],
    output: SolverOutput,
    latencies: dict[str, list[SourceLatency]],
    solver: str,
    seed: int,
    long_lived: LongLivedObjects,
) -> tuple[Placement, dict[str, explain.WorkloadExplanation]]:
    names = sorted(table)
    levels = _report_levels(table)

    workloads: list[WorkloadPlacement] = []
    unplaceable: list[Unplaceable] = []
    explanations: dict[str, explain.WorkloadExplanation] = {}
    costs_placed: list[CostBreakdown] = []
    lines: list[str] = []
    unplaced = [name for name in names if name not in allocations]
    summaries = dict(
        zip(
            unplaced,
            explain.summarize_all_unplaceable(
                ctx, [(table[name], output.unplaced.get(name)) for name in unplaced]
            ),
            strict=True,
        )
    )
    for n, name in enumerate(names):
        if n and n % _EXPLAIN_SETTLE_EVERY == 0:
            # What is explained is kept to the end (long_lived.py).
            long_lived.settle()
        cands = table[name]
        view = cands.view
        if name not in allocations:
            item = summaries[name]
            unplaceable.append(item)
            text = explain.describe_unplaceable(item)
            explanations[name] = explain.WorkloadExplanation(
                name, False, unplaceable=item, lines=text
            )
            lines += text
            continue
        allocs = allocations[name]
        costs = breakdowns(cands, allocs)
        by_allocation = explain.latency_by_allocation(
            view, latencies.get(name, []), levels.get(name, ())
        )
        details = [
            explain.explain_allocation(ctx, cands, a, cost, by_allocation.get(i, {}))
            for i, (a, cost) in enumerate(zip(allocs, costs, strict=True))
        ]
        cost = CostBreakdown.summed(costs)
        costs_placed.append(cost)
        monthly_requests = sum(s.monthly_requests for s in view.sources)
        measured = latencies.get(name, [])
        prediction_doc = _predicted(levels[name], measured) if measured else LatencyPrediction()
        runtimes = [view.profiles[int(cands.profile[a.candidate])].spec.runtime for a in allocs]
        rules: list[str] = []
        for d in details:
            rules += [r for r in d.rules if r not in rules]
        workloads.append(
            WorkloadPlacement(
                workload=name,
                workload_class=view.cls,
                assignments=[
                    Assignment(
                        site=d.site,
                        pool=d.pool,
                        profile=d.profile,
                        replicas=d.replicas,
                        sources=d.sources,
                    )
                    for d in details
                ],
                predicted=prediction_doc,
                slo_p99=view.workload.spec.slo.latency.p99
                if view.workload.spec.slo.latency
                else None,
                completion_time=max((r for r in runtimes if r is not None), default=None)
                if view.is_job
                else None,
                cost=cost,
                cost_per_1k_requests=(cost.total / (monthly_requests / 1000.0))
                if monthly_requests > 0
                else None,
                failure_domains=sorted({d.failure_domain for d in details}),
                rules_fired=rules,
            )
        )
        text = explain.describe_placed(name, details, cost)
        explanations[name] = explain.WorkloadExplanation(name, True, details, lines=text)
        lines += text
    total = CostBreakdown.summed(costs_placed)
    summary = (
        f"placed {len(workloads)} of {len(names)} workload(s) with the {solver} solver "
        f"(policy {policy.name}); {total.total:,.2f}/month"
    )
    placement = Placement(
        kind="Placement",
        metadata={"name": _name(fleet)},
        spec=PlacementSpec(
            fleet=fleet.name,
            policy=policy.name,
            workloads=workloads,
            unplaceable=unplaceable,
            cost=total,
            solver=SolverInfo(
                name=solver,
                version=__version__,
                seed=seed,
                optimality_gap=output.optimality_gap,
                status=output.status if not unplaceable else "incomplete",
                objective=output.objective,
                bound=output.bound,
            ),
            explanation=[summary, *lines],
        ),
    )
    return placement, explanations
