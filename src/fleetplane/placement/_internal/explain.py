"""Explain: why each workload went where it went, and why the others could not go anywhere.

For a placed workload: each allocation's site, pool, profile, replicas,
sources, cost terms and exact latency per source, and the policy rules that
applied there. For an unplaceable one: how many sites failed each constraint
(each site counted once, at the furthest filter any of its pools reached),
one example per constraint, and the closest miss — the candidate that got
furthest and missed by the smallest margin, e.g.
``store-12/edge: p99 62ms > 50ms SLO from store-12-cams``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fleetplane.model.placement import CostBreakdown, RejectionSummary, Unplaceable
from fleetplane.model.units import format_duration
from fleetplane.model.workload import PERCENTILES
from fleetplane.placement._internal import feasibility, prediction
from fleetplane.placement._internal.candidates import Allocation, Candidates
from fleetplane.placement._internal.context import PlanContext
from fleetplane.placement._internal.solve import Unplaced
from fleetplane.placement._internal.verify import SourceLatency
from fleetplane.placement._internal.workload_view import WorkloadView

# Unplaceable workloads whose diagnoses run side by side (summarize_all_unplaceable).
_SUMMARY_BLOCK = 256


@dataclass(frozen=True)
class AllocationExplanation:
    site: str
    pool: str
    profile: str
    replicas: int
    failure_domain: str
    sources: dict[str, float]
    cost: CostBreakdown
    latency: dict[str, dict[str, float]]  # source → {percentile name: seconds} at design load
    rules: list[str]


@dataclass
class WorkloadExplanation:
    workload: str
    placed: bool
    allocations: list[AllocationExplanation] = field(default_factory=list)
    unplaceable: Unplaceable | None = None
    lines: list[str] = field(default_factory=list)


def _label(q: float) -> str:
    for key, value in PERCENTILES.items():
        if value == q:
            return key
    return f"q{q:g}"


def latency_by_allocation(
    view: WorkloadView, latencies: list[SourceLatency], levels: tuple[float, ...]
) -> dict[int, dict[str, dict[str, float]]]:
    """Per allocation number: source name → {percentile label: seconds}."""
    labels = [_label(q) for q in levels]
    out: dict[int, dict[str, dict[str, float]]] = {}
    for m in latencies:
        out.setdefault(m.allocation, {})[view.sources[m.source].name] = dict(
            zip(labels, m.values, strict=True)
        )
    return out


def explain_allocation(
    ctx: PlanContext,
    cands: Candidates,
    alloc: Allocation,
    cost: CostBreakdown,
    latency: dict[str, dict[str, float]],
) -> AllocationExplanation:
    """``latency``: this allocation's entry of :func:`latency_by_allocation`."""
    view = cands.view
    c = alloc.candidate
    row = int(cands.row[c])
    profile = view.profiles[int(cands.profile[c])]
    return AllocationExplanation(
        site=ctx.index.site_of_row(row).name,
        pool=ctx.index.pools[row].name,
        profile=profile.hardware,
        replicas=alloc.replicas,
        failure_domain=ctx.domain_names[int(cands.domain[c])],
        sources={view.sources[s].name: share for s, share in enumerate(alloc.shares) if share > 0},
        cost=cost,
        latency=latency,
        rules=ctx.rules.fired(view, profile, row),
    )


def describe_placed(
    view_name: str, allocations: list[AllocationExplanation], total: CostBreakdown
) -> list[str]:
    lines = []
    sites = sorted({a.site for a in allocations})
    replicas = sum(a.replicas for a in allocations)
    lines.append(
        f"{view_name}: {replicas} replica(s) on {len(sites)} site(s), "
        f"{total.total:,.2f}/month (compute {total.compute:,.2f}, egress {total.egress:,.2f}, "
        f"model distribution {total.model_distribution:,.2f}, energy {total.energy:,.2f})"
    )
    for a in allocations:
        worst = ""
        if a.latency:
            src, values = max(a.latency.items(), key=lambda kv: max(kv[1].values()))
            key = "p99" if "p99" in values else next(iter(values))
            worst = f"; worst {key} {format_duration(values[key])} from {src}"
        served = f" serving {len(a.sources)} source(s)" if a.sources else ""
        lines.append(
            f"  {a.site}/{a.pool} on {a.profile}: {a.replicas} replica(s){served}, "
            f"{a.cost.total:,.2f}/month{worst}"
        )
        lines += [f"    rule {r}" for r in a.rules]
    return lines


def summarize_all_unplaceable(
    ctx: PlanContext, items: Sequence[tuple[Candidates, Unplaced | None]]
) -> list[Unplaceable]:
    """Per unplaced workload: counts per constraint, one example each, and the closest miss.

    Their exact latencies are computed together, in blocks: each diagnosis under
    way holds a few arrays over every pool of the fleet, and a broken fleet may
    leave every workload unplaced.
    """
    out: list[Unplaceable] = []
    for start in range(0, len(items), _SUMMARY_BLOCK):
        block = items[start : start + _SUMMARY_BLOCK]
        out += prediction.answer_together([_summarizing(ctx, c, v) for c, v in block])
    return out


def _summarizing(
    ctx: PlanContext, cands: Candidates, verdict: Unplaced | None
) -> prediction.Asking[Unplaceable]:
    view = cands.view
    source = verdict.source if verdict is not None and verdict.code == "sources" else None
    diagnosis = yield from feasibility.diagnosing(ctx, view, source)
    # Each infeasible site's best miss, ordered best first: furthest stage, then
    # the smallest overshoot, row and profile (one Miss object per shown example).
    best = diagnosis.site_best(ctx)
    best = best[
        np.lexsort(
            (
                diagnosis.profile[best],
                diagnosis.rows[best],
                diagnosis.ratio[best],
                -diagnosis.stage[best],
            )
        )
    ]
    stages = diagnosis.stage[best]
    # The closest miss is best[0], which is also the example of its own (the
    # furthest) stage: each miss is put in words once.
    worded: dict[int, str] = {}

    def words(k: int) -> prediction.Asking[str]:
        text = worded.get(k)
        if text is None:
            text = worded[k] = yield from feasibility.reasoning(ctx, view, diagnosis.miss(k))
        return text

    rejections = []
    for stage, (_, label) in enumerate(feasibility.STAGES):
        mine = np.flatnonzero(stages == stage)
        if not mine.size:
            continue
        rejections.append(
            RejectionSummary(
                constraint=label,
                sites=int(mine.size),
                example=(yield from words(int(best[mine[0]]))),
            )
        )
    closest = None
    if best.size:
        closest = yield from words(int(best[0]))
    feasible = [ctx.index.sites[s].name for s in diagnosis.feasible_sites(ctx)]
    if verdict is None or cands.size == 0:
        reason = f"no site passes every hard constraint ({ctx.index.n_sites} sites checked)"
    elif verdict.code == "sources" and verdict.source is not None:
        name = view.sources[verdict.source].name
        reason = f"no site can serve data source {name} within every hard constraint"
    else:
        shown = ", ".join(feasible[:5]) + (
            f" and {len(feasible) - 5} more" if len(feasible) > 5 else ""
        )
        reason = f"{verdict.detail}; site(s) passing every filter: {shown or 'none'}"
    return Unplaceable(
        workload=view.name,
        reason=reason,
        rejections=rejections,
        closest_miss=closest,
    )


def describe_unplaceable(item: Unplaceable) -> list[str]:
    lines = [f"{item.workload}: not placed — {item.reason}"]
    for r in item.rejections:
        lines.append(f"  {r.sites} site(s): {r.constraint} (e.g. {r.example})")
    if item.closest_miss:
        lines.append(f"  closest miss: {item.closest_miss}")
    return lines
