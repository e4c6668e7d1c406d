"""Printing for ``fleetplane plan``'s issue-3 options: diff, what-if, baselines, explain."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from fleetplane.model.fleet import Fleet
from fleetplane.model.placement import PlacementChange
from fleetplane.model.policy import PlacementPolicy
from fleetplane.placement import PlanResult


def changes_table(console: Console, title: str, changes: list[PlacementChange]) -> None:
    table = Table(title=title)
    for col in ("workload", "action", "before", "after", "Δ $/month", "move cost", "why"):
        table.add_column(col)
    for c in changes:
        table.add_row(
            c.workload,
            c.action,
            ", ".join(c.before),
            ", ".join(c.after),
            f"{c.cost_delta:+,.2f}",
            f"{c.move_cost:,.2f}",
            c.reason,
        )
    console.print(table)


def whatif(
    console: Console,
    fleet: Fleet,
    policy: PlacementPolicy | None,
    base: PlanResult,
    change: object,
    solver: str,
    seed: int,
    time_limit: float,
) -> None:
    from fleetplane.placement._internal.whatif import WhatIf, compare

    assert isinstance(change, WhatIf)
    result = compare(
        fleet, change, policy, solver=solver, seed=seed, time_limit=time_limit, base=base
    )
    changes_table(console, "What-if against the unmodified plan", result.changes)
    console.print(
        f"cost delta {result.cost_delta:+,.2f}/month; {len(result.changes)} workload(s) change; "
        f"SLOs at risk: {', '.join(result.at_risk) or 'none'}; newly unplaceable: "
        f"{', '.join(result.newly_unplaceable) or 'none'}",
        highlight=False,
        markup=False,
    )


def baselines(
    console: Console, fleet: Fleet, policy: PlacementPolicy | None, base: PlanResult
) -> None:
    from fleetplane.placement._internal.baselines import compare, slo_misses

    table = Table(title="Baselines (latency SLOs not enforced; misses predicted by the engine)")
    for col in ("plan", "$/month", "predicted SLO misses", "unplaced", "fleetplane saves"):
        table.add_column(col)
    ours = base.placement.spec.cost.total
    table.add_row(
        "fleetplane",
        f"{ours:,.2f}",
        str(slo_misses(fleet, base.placement)),
        str(len(base.placement.spec.unplaceable)),
        "",
    )
    for b in compare(fleet, policy):
        saving = (b.cost - ours) / b.cost * 100.0 if b.cost > 0 else 0.0
        table.add_row(
            b.name, f"{b.cost:,.2f}", str(b.slo_misses), str(b.unplaced), f"{saving:+.1f}%"
        )
    console.print(table)


def explain(
    console: Console,
    fleet: Fleet,
    policy: PlacementPolicy | None,
    result: PlanResult,
    workload: str,
) -> None:
    from fleetplane.errors import ValidationError, did_you_mean
    from fleetplane.placement._internal.counterfactual import find, runner_up

    found = result.explanations.get(workload)
    if found is None:
        hint = did_you_mean(workload, list(result.explanations))
        raise ValidationError(
            f"--explain {workload}: no such workload" + (f"; {hint}" if hint else "")
        )
    for line in found.lines:
        console.print(line, highlight=False, markup=False)
    placed = next((w for w in result.placement.spec.workloads if w.workload == workload), None)
    if placed is not None and placed.rules_fired:
        console.print(
            "rules fired: " + ", ".join(placed.rules_fired), highlight=False, markup=False
        )
    cands = result.candidates.get(workload)
    if cands is not None:
        rejected = len(fleet.sites) - len({int(s) for s in cands.site.tolist()})
        console.print(f"{rejected} site(s) failed a hard constraint", highlight=False, markup=False)
    if found.unplaceable is not None:
        return
    site = runner_up(fleet, result, workload)
    if site is None:
        console.print("no runner-up: no other site can run it", highlight=False, markup=False)
        return
    cf = find(fleet, policy, workload, site)
    text = cf.sentence() if cf else f"runner-up {site} would not win even at zero prices"
    console.print("counterfactual: " + text, highlight=False, markup=False)
