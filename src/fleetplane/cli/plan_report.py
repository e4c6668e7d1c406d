"""Reports for ``fleetplane plan``'s issue-3 options: diff, what-if, baselines, explain.

Each report is built as a plain document (what ``-o json|yaml`` prints) and
rendered from that document for the terminal, so both show the same facts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fleetplane.cli.long_table import print_table
from fleetplane.model.fleet import Fleet
from fleetplane.model.placement import PlacementChange
from fleetplane.model.policy import PlacementPolicy
from fleetplane.model.units import format_duration
from fleetplane.placement import PlanResult

if TYPE_CHECKING:
    from fleetplane.placement._internal.counterfactual import Planner

Doc = dict[str, Any]


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
            escape(c.reason),  # free text (rule names and text): never read as markup
        )
    print_table(console, table)


def _say(console: Console, text: str) -> None:
    console.print(text, highlight=False, markup=False)


def _change_doc(change: PlacementChange) -> Doc:
    doc: Doc = change.model_dump(mode="json", by_alias=True, exclude_none=True)
    return doc


def whatif_report(
    fleet: Fleet,
    policy: PlacementPolicy | None,
    base: PlanResult,
    change: object,
    solver: str,
    seed: int,
    time_limit: float,
) -> Doc:
    from fleetplane.placement._internal.whatif import WhatIf, compare

    assert isinstance(change, WhatIf)
    result = compare(
        fleet, change, policy, solver=solver, seed=seed, time_limit=time_limit, base=base
    )
    return {
        "withoutSites": list(change.without_sites),
        "scaleDemand": change.scale_demand,
        "prices": dict(change.prices),
        "changes": [_change_doc(c) for c in result.changes],
        "costDelta": result.cost_delta,
        "sloAtRisk": result.at_risk,
        "newlyUnplaceable": result.newly_unplaceable,
    }


def print_whatif(console: Console, doc: Doc) -> None:
    changes = [PlacementChange.model_validate(c) for c in doc["changes"]]
    changes_table(console, "What-if against the unmodified plan", changes)
    _say(
        console,
        f"cost delta {doc['costDelta']:+,.2f}/month; {len(changes)} workload(s) change; "
        f"SLOs at risk: {', '.join(doc['sloAtRisk']) or 'none'}; newly unplaceable: "
        f"{', '.join(doc['newlyUnplaceable']) or 'none'}",
    )


def baselines_report(fleet: Fleet, policy: PlacementPolicy | None, base: PlanResult) -> Doc:
    from fleetplane.placement._internal.baselines import compare, slo_misses

    ours = base.placement.spec.cost.total
    plans: list[Doc] = [
        {
            "plan": "fleetplane",
            "cost": ours,
            "predictedSloMisses": slo_misses(fleet, base.placement),
            "unplaced": len(base.placement.spec.unplaceable),
        }
    ]
    for b in compare(fleet, policy):
        plans.append(
            {
                "plan": b.name,
                "cost": b.cost,
                "predictedSloMisses": b.slo_misses,
                "unplaced": b.unplaced,
                "fleetplaneSaves": (b.cost - ours) / b.cost if b.cost > 0 else 0.0,
            }
        )
    return {"plans": plans}


def print_baselines(console: Console, doc: Doc) -> None:
    table = Table(title="Baselines (latency SLOs not enforced; misses predicted by the engine)")
    for col in ("plan", "$/month", "predicted SLO misses", "unplaced", "fleetplane saves"):
        table.add_column(col)
    for p in doc["plans"]:
        saves = p.get("fleetplaneSaves")
        table.add_row(
            p["plan"],
            f"{p['cost']:,.2f}",
            str(p["predictedSloMisses"]),
            str(p["unplaced"]),
            "" if saves is None else f"{saves * 100.0:+.1f}%",
        )
    console.print(table)


def explain_report(
    fleet: Fleet,
    policy: PlacementPolicy | None,
    result: PlanResult,
    workload: str,
    planner: Planner,
) -> Doc:
    """Chosen sites (cost and p99 breakdown), rules, rejected sites, runner-up, counterfactuals."""
    from fleetplane.errors import ValidationError, did_you_mean
    from fleetplane.placement._internal import counterfactual, latency_split, rejections

    found = result.explanations.get(workload)
    if found is None:
        hint = did_you_mean(workload, list(result.explanations))
        raise ValidationError(
            f"--explain {workload}: no such workload" + (f"; {hint}" if hint else "")
        )
    ctx, cands = result.context, result.candidates[workload]
    assert ctx is not None  # run() always records it
    doc: Doc = {"workload": workload, "placed": found.placed, "summary": found.lines[:1]}
    placed = next((w for w in result.placement.spec.workloads if w.workload == workload), None)
    doc["rulesFired"] = list(placed.rules_fired) if placed is not None else []
    chosen: list[Doc] = []
    for detail, alloc in zip(found.allocations, result.allocations.get(workload, []), strict=True):
        item: Doc = {
            "site": detail.site,
            "pool": detail.pool,
            "profile": detail.profile,
            "replicas": detail.replicas,
            "cost": {
                **detail.cost.model_dump(mode="json", by_alias=True),
                "total": detail.cost.total,
            },
            "rules": detail.rules,
        }
        split = latency_split.latency_breakdown(ctx, cands, alloc)
        if split is not None:
            item["latency"] = {
                "source": split.source,
                "quantile": split.quantile,
                "total": split.total,
                "storage": split.storage,
                "network": split.network,
                "service": split.service,
                "wait": split.wait,
            }
        chosen.append(item)
    doc["chosen"] = chosen
    doc["rejected"] = [
        {"constraint": g.constraint, "sites": g.sites, "examples": g.examples}
        for g in rejections.rejected_sites(ctx, cands.view)
    ]
    if found.unplaceable is not None:
        doc["unplaceable"] = found.lines
        return doc
    best, found_cfs = counterfactual.find_all(fleet, planner, result, workload)
    doc["runnerUp"] = None if best is None else {"site": best.site, "objective": best.cost}
    doc["counterfactuals"] = [
        {"site": cf.site, "kind": cf.kind, "value": cf.value, "text": cf.text} for cf in found_cfs
    ]
    return doc


def _ms(seconds: float) -> str:
    return format_duration(float(f"{seconds:.3g}")) if seconds >= 1e-3 else f"{seconds * 1e3:.2f}ms"


def print_explain(console: Console, doc: Doc) -> None:
    for line in doc.get("unplaceable") or doc["summary"]:
        _say(console, line)
    if doc["chosen"]:
        _say(console, "chosen:")
    for c in doc["chosen"]:
        cost = c["cost"]
        _say(
            console,
            f"  {c['site']}/{c['pool']} on {c['profile']} ×{c['replicas']}: "
            f"{cost['total']:,.2f}/month = compute {cost['compute']:,.2f} + egress "
            f"{cost['egress']:,.2f} + model distribution {cost['modelDistribution']:,.2f} "
            f"+ energy {cost['energy']:,.2f}",
        )
        lat = c.get("latency")
        if lat:
            _say(
                console,
                f"    {lat['quantile']} from {lat['source']} {_ms(lat['total'])} = storage "
                f"{_ms(lat['storage'])} + network RTT {_ms(lat['network'])} + service "
                f"{_ms(lat['service'])} + wait {_ms(lat['wait'])}",
            )
    _say(console, "rules fired: " + (", ".join(doc["rulesFired"]) or "none"))
    total = sum(g["sites"] for g in doc["rejected"])
    _say(console, f"rejected sites ({total}, by first failed constraint):")
    for g in doc["rejected"]:
        _say(console, f"  {g['constraint']}: {g['sites']} site(s) ({'; '.join(g['examples'])})")
    if "runnerUp" not in doc:
        return
    best = doc["runnerUp"]
    if best is None:
        _say(console, "runner-up: none (no other feasible site)")
    else:
        _say(
            console,
            f"runner-up: {best['site']} ({best['objective']:,.2f}/month per unit of demand "
            "by the solver objective)",
        )
    for cf in doc["counterfactuals"]:
        _say(console, f"counterfactual ({cf['kind']}): {cf['text']}")
    if best is not None and not doc["counterfactuals"]:
        _say(console, "counterfactual: none found that re-planning confirms")
