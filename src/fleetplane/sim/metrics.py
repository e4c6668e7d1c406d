"""Measure one replication: percentiles, outcomes, utilisation, egress, time series, Little's law.

Only requests sent at or after the warm-up count. Percentiles of the
client-observed latency exclude dropped requests (they got an immediate
error, not a latency) and count timed-out ones at the timeout. Quantiles use
numpy's default (linear interpolation between order statistics), computed for
many groups at once by sorting once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from fleetplane.model.workload import Workload
from fleetplane.sim.engine import DROPPED, EXPIRED, LATE, LOST, OK, OUTCOMES, Prepared, Requests

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Quantile levels reported per workload, in this order.
LEVELS = (0.5, 0.95, 0.99, 0.999)
#: Levels of the stored latency CDF: evenly spaced, then dense in the tail.
CDF_LEVELS = np.unique(
    np.concatenate([np.linspace(0.0, 1.0, 101), [0.995, 0.998, 0.999, 0.9995, 0.9999]])
)
#: The time series has at most this many buckets (one per minute up to a day).
MAX_BUCKETS = 1440


@dataclass
class WorkloadRun:
    counts: dict[str, int]  # per outcome name, plus "requests"
    latency: FloatArray  # quantiles at LEVELS
    latency_mean: float
    wait: FloatArray  # quantiles at LEVELS
    wait_mean: float
    breakdown: dict[str, float]  # mean network, storage, wait, service of answered requests
    cdf: FloatArray  # latency at CDF_LEVELS
    within: dict[float, float]  # SLO threshold (s) → fraction of requests within it
    egress_bytes: float
    egress_cost: float  # money spent on egress in the counted window


@dataclass
class SeriesRun:
    bucket: float
    starts: FloatArray
    requests: IntArray  # (workloads, buckets)
    timeouts: IntArray
    dropped: IntArray
    p50: FloatArray
    p99: FloatArray
    utilisation: FloatArray  # (sites with servers, buckets)
    in_system: FloatArray  # mean number of requests at queues per bucket


@dataclass
class LittleRun:
    in_system: float  # L, time-averaged
    arrival_rate: float  # lambda
    time_in_system: float  # W
    relative_error: float


@dataclass
class RunMetrics:
    workloads: list[WorkloadRun]
    site_servers: IntArray  # per site (all sites; 0 where nothing runs)
    site_requests: IntArray
    site_utilisation: FloatArray
    link_bytes: FloatArray  # (links, 2): a→b, b→a
    series: SeriesRun
    little: LittleRun
    simulated: int  # every request generated, warm-up included


def measure(prep: Prepared, req: Requests) -> RunMetrics:
    model = prep.model
    spec = model.scenario.spec
    counted = req.dispatch >= spec.warmup
    window = spec.duration - spec.warmup
    stream_workload = np.array([s.workload for s in model.streams], dtype=np.int64)
    workload = stream_workload[req.stream] if req.size else np.zeros(0, np.int64)
    link_bytes, request_bytes, request_cost = _egress(prep, req, counted)
    servers, requests, utilisation = _sites(prep, req, counted, window)
    steps = CountProcess.of(*_queue_stays(req))
    # Requests with a latency (not dropped), by increasing latency: one sort serves
    # the per-workload percentiles and the per-minute ones.
    seen = np.flatnonzero(req.outcome != DROPPED)
    by_latency = seen[np.argsort(req.latency[seen])]
    return RunMetrics(
        workloads=_workloads(prep, req, counted, workload, by_latency, request_bytes, request_cost),
        site_servers=servers,
        site_requests=requests,
        site_utilisation=utilisation,
        link_bytes=link_bytes,
        series=_series(prep, req, workload, by_latency, steps),
        little=_little(req, steps, spec.warmup, spec.duration),
        simulated=req.size,
    )


def grouped_quantiles(
    values: FloatArray, groups: IntArray, n_groups: int, levels: FloatArray
) -> FloatArray:
    """Quantiles (numpy's linear method) of ``values`` within each group; NaN for empty groups."""
    by_value = np.argsort(values)
    return ranked_quantiles(values[by_value], groups[by_value], n_groups, levels)


def ranked_quantiles(
    ordered: FloatArray, groups: IntArray, n_groups: int, levels: FloatArray
) -> FloatArray:
    """:func:`grouped_quantiles` of values already in increasing order (``groups`` alongside).

    A stable sort by group (a radix sort when group numbers fit 16 bits) keeps
    each group's values in order and side by side, so all quantiles of all
    groups are one gather.
    """
    out = np.full((n_groups, levels.shape[0]), np.nan)
    if ordered.shape[0] == 0:
        return out
    ordered = ordered[np.argsort(_compact(groups, n_groups), kind="stable")]
    counts = np.bincount(groups, minlength=n_groups)
    starts = np.cumsum(counts) - counts
    present = np.flatnonzero(counts)
    position = (counts[present, None] - 1) * levels[None, :]
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, counts[present, None] - 1)
    base = starts[present, None]
    below, above = ordered[base + low], ordered[base + high]
    out[present] = below + (above - below) * (position - low)
    return out


def _compact(keys: IntArray, n_keys: int) -> npt.NDArray[np.integer[Any]]:
    """The smallest integer type for the keys: numpy's stable sort is a radix sort up to 16 bits."""
    return keys.astype(np.int16) if n_keys < 2**15 else keys


def _group_mean(values: FloatArray, groups: IntArray, n_groups: int) -> FloatArray:
    total = np.bincount(groups, weights=values, minlength=n_groups)
    count = np.bincount(groups, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(np.where(count > 0, total / count, np.nan), dtype=np.float64)


def _workloads(
    prep: Prepared,
    req: Requests,
    counted: npt.NDArray[np.bool_],
    workload: IntArray,
    by_latency: IntArray,
    request_bytes: FloatArray,
    request_cost: FloatArray,
) -> list[WorkloadRun]:
    """Every workload's figures at once: grouped sums and quantiles, no loop over requests."""
    n_w = len(prep.model.workloads)
    index = np.flatnonzero(counted)
    w = workload[index]
    outcome = req.outcome[index].astype(np.int64)
    latency = req.latency[index]
    by_outcome = np.bincount(w * len(OUTCOMES) + outcome, minlength=n_w * len(OUTCOMES))
    by_outcome = by_outcome.reshape(n_w, len(OUTCOMES))
    ranked = by_latency[counted[by_latency]]
    levels = np.asarray(LEVELS + tuple(CDF_LEVELS))
    quantiles = ranked_quantiles(req.latency[ranked], workload[ranked], n_w, levels)
    latency_mean = _group_mean(req.latency[ranked], workload[ranked], n_w)
    answered = index[(outcome == OK) | (outcome == LATE)]
    w_answered = workload[answered]
    wait = req.start[answered] - req.arrival[answered]
    wait_quantiles = grouped_quantiles(wait, w_answered, n_w, np.asarray(LEVELS))
    means = {
        "network": _group_mean(req.network[answered], w_answered, n_w),
        "storage": _group_mean(req.storage[answered], w_answered, n_w),
        "wait": _group_mean(wait, w_answered, n_w),
        "service": _group_mean(req.service[answered], w_answered, n_w),
    }
    thresholds = [_thresholds(sw.workload) for sw in prep.model.workloads]
    within = _within(thresholds, w, outcome, latency, n_w)
    egress_bytes = np.bincount(w, weights=request_bytes[index], minlength=n_w)
    egress_cost = np.bincount(w, weights=request_cost[index], minlength=n_w)
    runs = []
    for i in range(n_w):
        counts = {name: int(by_outcome[i, code]) for code, name in enumerate(OUTCOMES)}
        counts["requests"] = int(by_outcome[i].sum())
        runs.append(
            WorkloadRun(
                counts=counts,
                latency=quantiles[i, : len(LEVELS)],
                latency_mean=float(latency_mean[i]),
                wait=wait_quantiles[i],
                wait_mean=float(means["wait"][i]),
                breakdown={part: float(values[i]) for part, values in means.items()},
                cdf=quantiles[i, len(LEVELS) :],
                within={
                    t: float(within[i, j]) / max(counts["requests"], 1)
                    for j, t in enumerate(thresholds[i])
                },
                egress_bytes=float(egress_bytes[i]),
                egress_cost=float(egress_cost[i]),
            )
        )
    return runs


def _thresholds(workload: Workload) -> list[float]:
    targets = workload.spec.slo.latency
    return [t for _, t in targets.targets()] if targets else []


def _within(
    thresholds: list[list[float]],
    w: IntArray,
    outcome: IntArray,
    latency: FloatArray,
    n_w: int,
) -> FloatArray:
    """Per workload and SLO target: requests answered in time and within the target."""
    width = max((len(t) for t in thresholds), default=0)
    table = np.full((n_w, max(width, 1)), -np.inf)
    for i, targets in enumerate(thresholds):
        table[i, : len(targets)] = targets
    ok = outcome == OK
    out = np.zeros((n_w, max(width, 1)))
    for j in range(width):
        hit = ok & (latency <= table[w, j])
        out[:, j] = np.bincount(w[hit], minlength=n_w)
    return out


def _egress(
    prep: Prepared, req: Requests, counted: npt.NDArray[np.bool_]
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Bytes per link and direction, and bytes and egress money per request.

    A request's payload (its source's ``requestSize``) crosses every link of
    its route once, even when it is then lost; requests served where they
    originate send nothing, and responses have no size in the model. Egress
    is priced per link in the direction crossed.
    """
    model = prep.model
    n_links = len(model.link_names)
    link_bytes = np.zeros((n_links, 2))
    size = np.array([s.source.spec.request_size for s in model.streams], dtype=np.float64)
    crosses = np.array([len(model.routes[r].links) > 0 for r in prep.delays.candidate_route])
    sent = req.candidate >= 0
    sent[sent] = crosses[req.candidate[sent]]
    request_bytes = np.where(sent, size[req.stream], 0.0)
    request_cost = np.zeros(req.size)
    if n_links == 0:
        return link_bytes, request_bytes, request_cost
    links = list(model.fleet.links.values())
    per_candidate = np.bincount(
        req.candidate[counted & (req.candidate >= 0)],
        weights=request_bytes[counted & (req.candidate >= 0)],
        minlength=prep.cand_assignment.shape[0],
    )
    price = np.zeros(prep.cand_assignment.shape[0])  # money per byte along each candidate route
    for c, route_index in enumerate(prep.delays.candidate_route):
        route = model.routes[int(route_index)]
        for link, forward in zip(route.links, route.forward, strict=True):
            spec = links[link].spec.egress_price
            link_bytes[link, 0 if forward else 1] += per_candidate[c]
            price[c] += (spec.a_to_b if forward else spec.b_to_a) / 1e9
    routed = req.candidate >= 0
    request_cost[routed] = request_bytes[routed] * price[req.candidate[routed]]
    return link_bytes, request_bytes, request_cost


def _busy(prep: Prepared, req: Requests) -> tuple[IntArray, FloatArray, FloatArray]:
    """Site, start and end of every stretch of service that happened."""
    served = (req.queue >= 0) & ((req.outcome == OK) | (req.outcome == LATE))
    site = prep.queue_site[req.queue[served]]
    start = req.start[served]
    return site, start, start + req.service[served]


def _sites(
    prep: Prepared, req: Requests, counted: npt.NDArray[np.bool_], window: float
) -> tuple[IntArray, IntArray, FloatArray]:
    n_sites = len(prep.model.site_names)
    servers = np.bincount(prep.queue_site, weights=prep.queue_servers, minlength=n_sites)
    reached = counted & (req.queue >= 0)
    requests = np.bincount(prep.queue_site[req.queue[reached]], minlength=n_sites)
    site, start, end = _busy(prep, req)
    lo = prep.model.scenario.spec.warmup
    hi = prep.model.scenario.spec.duration
    busy = np.clip(end, lo, hi) - np.clip(start, lo, hi)
    busy_time = np.bincount(site, weights=busy, minlength=n_sites)
    with np.errstate(invalid="ignore", divide="ignore"):
        utilisation = np.where(servers > 0, busy_time / (servers * window), 0.0)
    return servers.astype(np.int64), requests.astype(np.int64), utilisation


def bucket_width(duration: float) -> float:
    minutes = max(1, int(np.ceil(duration / 60.0 / MAX_BUCKETS)))
    return 60.0 * minutes


def _series(
    prep: Prepared,
    req: Requests,
    workload: IntArray,
    by_latency: IntArray,
    steps: CountProcess,
) -> SeriesRun:
    """Per bucket of dispatch time (the warm-up included)."""
    spec = prep.model.scenario.spec
    width = bucket_width(spec.duration)
    n_buckets = int(np.ceil(spec.duration / width))
    n_w = len(prep.model.workloads)
    bucket = np.minimum((req.dispatch // width).astype(np.int64), n_buckets - 1)
    key = workload * n_buckets + bucket
    size = n_w * n_buckets
    timed_out = (req.outcome == LATE) | (req.outcome == LOST) | (req.outcome == EXPIRED)
    requests = np.bincount(key, minlength=size).reshape(n_w, n_buckets)
    timeouts = np.bincount(key[timed_out], minlength=size).reshape(n_w, n_buckets)
    dropped = np.bincount(key[req.outcome == DROPPED], minlength=size).reshape(n_w, n_buckets)
    quantiles = ranked_quantiles(
        req.latency[by_latency], key[by_latency], size, np.array([0.5, 0.99])
    ).reshape(n_w, n_buckets, 2)
    sites_used = np.flatnonzero(np.bincount(prep.queue_site, minlength=len(prep.model.site_names)))
    return SeriesRun(
        bucket=width,
        starts=np.arange(n_buckets, dtype=np.float64) * width,
        requests=requests,
        timeouts=timeouts,
        dropped=dropped,
        p50=quantiles[:, :, 0],
        p99=quantiles[:, :, 1],
        utilisation=_utilisation_series(prep, req, sites_used, width, n_buckets),
        in_system=steps.integral(np.arange(n_buckets + 1, dtype=np.float64) * width) / width,
    )


def _utilisation_series(
    prep: Prepared, req: Requests, sites_used: IntArray, width: float, n_buckets: int
) -> FloatArray:
    """Busy fraction per site and bucket; a service stretch spanning buckets is split."""
    site, start, end = _busy(prep, req)
    end = np.minimum(end, n_buckets * width)
    keep = start < end
    site, start, end = site[keep], start[keep], end[keep]
    first = (start // width).astype(np.int64)
    last = np.minimum((np.nextafter(end, -np.inf) // width).astype(np.int64), n_buckets - 1)
    n_sites = len(prep.model.site_names)
    size = n_sites * n_buckets
    # Service times are far shorter than a bucket: split only the few that cross one.
    inside = first == last
    busy = np.bincount(
        site[inside] * n_buckets + first[inside], weights=(end - start)[inside], minlength=size
    )
    crossing = np.flatnonzero(~inside)
    if crossing.shape[0]:
        pieces = last[crossing] - first[crossing] + 1
        owner = np.repeat(crossing, pieces)
        bucket = first[owner] + (
            np.arange(int(pieces.sum())) - np.repeat(np.cumsum(pieces) - pieces, pieces)
        )
        lo = np.maximum(start[owner], bucket * width)
        hi = np.minimum(end[owner], (bucket + 1) * width)
        busy += np.bincount(site[owner] * n_buckets + bucket, weights=hi - lo, minlength=size)
    servers = np.bincount(prep.queue_site, weights=prep.queue_servers, minlength=n_sites)
    per_site = busy.reshape(n_sites, n_buckets)[sites_used]
    return np.asarray(per_site / (servers[sites_used, None] * width), dtype=np.float64)


def _queue_stays(req: Requests) -> tuple[FloatArray, FloatArray]:
    """Arrival and departure at the queue of every request that stayed in one.

    Served requests leave when service ends, skipped (expired) ones when
    their turn comes; lost ones are left out on both sides of Little's law.
    """
    stayed = (req.queue >= 0) & (req.outcome != LOST) & (req.outcome != DROPPED)
    served = req.outcome[stayed] != EXPIRED
    arrival = req.arrival[stayed]
    leave = req.start[stayed] + np.where(served, req.service[stayed], 0.0)
    return arrival, leave


@dataclass(frozen=True)
class CountProcess:
    """N(t) = A(t) - D(t): requests that have arrived at a queue minus those that left.

    Its integral is exact between events: ∫₀ˣ A(t) dt = Σ (x - aᵢ)⁺, evaluated
    with sorted event times and prefix sums.
    """

    arrivals: FloatArray  # sorted
    arrival_sums: FloatArray  # prefix sums, with a leading 0
    departures: FloatArray
    departure_sums: FloatArray

    @classmethod
    def of(cls, arrival: FloatArray, leave: FloatArray) -> CountProcess:
        # Both come in nearly sorted runs (per stream, per queue): timsort is fast on them.
        a = np.sort(arrival, kind="stable")
        d = np.sort(leave, kind="stable")
        return cls(
            a, np.concatenate([[0.0], np.cumsum(a)]), d, np.concatenate([[0.0], np.cumsum(d)])
        )

    def integral(self, edges: FloatArray) -> FloatArray:
        """∫ N(t) dt over each [edges[i], edges[i+1])."""
        up = _area(self.arrivals, self.arrival_sums, edges)
        down = _area(self.departures, self.departure_sums, edges)
        return np.diff(up - down)


def _area(times: FloatArray, sums: FloatArray, x: FloatArray) -> FloatArray:
    count = np.searchsorted(times, x, side="right")
    return np.asarray(count * x - sums[count], dtype=np.float64)


def _little(req: Requests, steps: CountProcess, start: float, end: float) -> LittleRun:
    """L (time average of the number at the queues) against λW, over [start, end)."""
    arrival, leave = _queue_stays(req)
    window = end - start
    in_system = float(steps.integral(np.array([start, end], dtype=np.float64))[0]) / window
    arriving = (arrival >= start) & (arrival < end)
    rate = float(np.count_nonzero(arriving)) / window
    stay = float((leave - arrival)[arriving].mean()) if np.any(arriving) else 0.0
    product = rate * stay
    error = abs(in_system - product) / in_system if in_system > 0 else abs(product)
    return LittleRun(in_system, rate, stay, error)
