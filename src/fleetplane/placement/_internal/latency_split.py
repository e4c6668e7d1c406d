"""Where a chosen allocation's p99 comes from: storage, network round trip, service, wait.

Recomputed for the explanation with the same parts and design load verify
uses (feasibility.latency_parts, prediction.wait_params), one allocation at
a time, so it costs nothing unless ``--explain`` asks.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from fleetplane.model.workload import PERCENTILES
from fleetplane.placement._internal import feasibility, prediction
from fleetplane.placement._internal.candidates import Allocation, Candidates
from fleetplane.placement._internal.context import PlanContext


@dataclass(frozen=True)
class LatencyBreakdown:
    """One allocation's slowest source at one quantile, split into what each part adds.

    The parts are added in this order — storage, network round trip, service,
    queueing wait — and each contributes the increase of the quantile it
    causes, so the contributions sum to the total (a quantile of a sum is not
    the sum of quantiles; this split is exact and order-dependent).
    """

    source: str
    quantile: str
    total: float
    storage: float
    network: float
    service: float
    wait: float


def _without_service(parts: prediction.Parts) -> prediction.Parts:
    # A negligible constant service time: the library needs a positive mean.
    return replace(parts, svc_mean=np.full(parts.size, 1e-12), svc_cv=np.zeros(parts.size))


def latency_breakdown(
    ctx: PlanContext, cands: Candidates, alloc: Allocation
) -> LatencyBreakdown | None:
    """At design load (as verify computes it), for the source with the highest quantile."""
    view = cands.view
    if view.is_job or not view.targets or not view.sources:
        return None
    q = next((v for v, _ in view.targets if v == PERCENTILES["p99"]), view.targets[-1][0])
    c = alloc.candidate
    row = np.array([int(cands.row[c])], dtype=np.int64)
    profile = view.profiles[int(cands.profile[c])]
    served = np.flatnonzero(np.array(alloc.design_shares) > 0)
    if not served.size:
        return None
    storage = feasibility.storage_latency(ctx, view, row)
    parts = feasibility.latency_parts(ctx, view, profile, row, storage).take(served)
    rates = np.array([s.rate for s in view.sources]) * view.design_factor
    load = float(rates @ np.array(alloc.design_shares))
    n = parts.size
    wait_c, theta = prediction.wait_params(
        np.full(n, load), np.full(n, alloc.replicas * profile.spec.concurrency), parts
    )
    levels = np.full(n, q)
    network = prediction.quantiles(levels, _without_service(parts))
    service = prediction.quantiles(levels, parts)
    total = prediction.quantiles(levels, parts, wait_c, theta)
    worst = int(np.argmax(total))
    base = float(parts.storage[worst])
    return LatencyBreakdown(
        source=view.sources[int(served[worst])].name,
        quantile=_label(q),
        total=float(total[worst]),
        storage=base,
        network=float(network[worst]) - base,
        service=float(service[worst] - network[worst]),
        wait=float(total[worst] - service[worst]),
    )


def _label(q: float) -> str:
    return next((k for k, v in PERCENTILES.items() if v == q), f"q{q:g}")
