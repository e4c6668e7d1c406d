"""One replication: every request's journey, computed stage by stage over arrays.

Instead of a heap of events, each stage handles all requests at once:
arrivals per stream → routing → service times → network delays → the
queues (compiled Kiefer–Wolfowitz recursion over requests sorted by queue
and arrival) → outcome. Only the queue recursion (and least-loaded routing)
is sequential, and those are compiled. Every request ends with exactly one
outcome, so requests in = answered + timed out + dropped by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fleetplane.latency.distributions import ServiceTime
from fleetplane.model.scenario import TrafficSpec
from fleetplane.sim.build import SimModel
from fleetplane.sim.delays import DelayTables, build_delay_tables, sample_delays
from fleetplane.sim.faults import FaultPlan, plan_faults
from fleetplane.sim.intervals import flatten, inside
from fleetplane.sim.queues import EXPIRED as QUEUE_EXPIRED
from fleetplane.sim.queues import LOST as QUEUE_LOST
from fleetplane.sim.queues import lost_in_crash, run_fifo_queues
from fleetplane.sim.routing import (
    DROP,
    Groups,
    build_groups,
    choose_by_weight,
    choose_least_loaded,
)
from fleetplane.sim.traffic import Intensity, intensity, poisson_arrivals, replay_trace

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Int8Array = npt.NDArray[np.int8]

# Outcomes. LATE, LOST and EXPIRED are the three ways to time out.
OK = 0
LATE = 1  # answered, but after the client's timeout
LOST = 2  # its site was down or partitioned away when it got there (or crashed with it in)
EXPIRED = 3  # waited past its client's timeout; the server skipped it
DROPPED = 4  # no replica could be reached: rejected at once
OUTCOMES = ("ok", "late", "lost", "expired", "dropped")


@dataclass
class Requests:
    """One replication's requests; all arrays share one order (by stream, then time)."""

    dispatch: FloatArray
    stream: IntArray
    candidate: IntArray  # global candidate index, DROP when dropped
    queue: IntArray  # -1 when the request never reached a queue
    arrival: FloatArray  # at the queue
    start: FloatArray  # of service (or when the server skipped it)
    service: FloatArray
    network: FloatArray  # out and back, retransmissions included
    storage: FloatArray
    latency: FloatArray  # as the client saw it: the timeout for timed-out ones, NaN if dropped
    outcome: Int8Array

    @property
    def size(self) -> int:
        return int(self.dispatch.shape[0])


@dataclass(frozen=True)
class Prepared:
    """Everything replications share, computed once."""

    model: SimModel
    faults: FaultPlan
    groups: Groups
    delays: DelayTables
    intensities: list[Intensity | None]  # per stream; None for a trace
    traces: dict[str, FloatArray]
    cand_assignment: IntArray
    cand_cut: list[list[tuple[float, float]]]
    queue_site: IntArray
    queue_servers: IntArray
    queue_storage: FloatArray
    queue_service: IntArray  # index into ``services``
    queue_slot: IntArray  # index into its workload's ``services`` (least-loaded)
    services: list[ServiceTime]
    workload_services: list[list[int]]
    assignment_queue: IntArray  # first queue of each assignment
    assignment_queues: IntArray  # how many queues each assignment has
    down_start: FloatArray
    down_end: FloatArray
    down_offsets: IntArray


def prepare(model: SimModel, traces: dict[str, FloatArray] | None = None) -> Prepared:
    faults = plan_faults(model)
    spec = model.scenario.spec
    by_source: dict[str, TrafficSpec] = {t.source: t for t in spec.traffic}
    intensities: list[Intensity | None] = []
    for stream in model.streams:
        traffic = by_source.get(stream.source.name)
        if traffic is not None and traffic.pattern == "trace":
            intensities.append(None)
        else:
            intensities.append(intensity(stream.source, traffic, spec, stream.share))
    services: list[ServiceTime] = []
    service_index: dict[ServiceTime, int] = {}
    workload_services: list[list[int]] = [[] for _ in model.workloads]
    queue_service, queue_slot = [], []
    for queue in model.queues:
        index = service_index.setdefault(queue.service, len(service_index))
        if index == len(services):
            services.append(queue.service)
        mine = workload_services[queue.workload]
        if index not in mine:
            mine.append(index)
        queue_service.append(index)
        queue_slot.append(mine.index(index))
    down = [faults.site_down[q.site] for q in model.queues]
    down_start, down_end, down_offsets = flatten(down)
    return Prepared(
        model=model,
        faults=faults,
        groups=build_groups(model, faults),
        delays=build_delay_tables(model, faults.links),
        intensities=intensities,
        traces=traces if traces is not None else {},
        cand_assignment=np.array(
            [c.assignment for s in model.streams for c in s.candidates], dtype=np.int64
        ),
        cand_cut=[cut for per_stream in faults.candidate_cut for cut in per_stream],
        queue_site=np.array([q.site for q in model.queues], dtype=np.int64),
        queue_servers=np.array([q.servers for q in model.queues], dtype=np.int64),
        queue_storage=np.array([q.storage for q in model.queues], dtype=np.float64),
        queue_service=np.array(queue_service, dtype=np.int64),
        queue_slot=np.array(queue_slot, dtype=np.int64),
        services=services,
        workload_services=workload_services,
        assignment_queue=np.array([a.queues[0] for a in model.assignments], dtype=np.int64),
        assignment_queues=np.array([len(a.queues) for a in model.assignments], dtype=np.int64),
        down_start=down_start,
        down_end=down_end,
        down_offsets=down_offsets,
    )


def _generators(seed: np.random.SeedSequence, n: int) -> list[np.random.Generator]:
    return [np.random.Generator(np.random.PCG64(s)) for s in seed.spawn(n)]


def run_replication(prep: Prepared, seed: np.random.SeedSequence) -> Requests:
    model = prep.model
    spec = model.scenario.spec
    traffic_seed, stage_seed = seed.spawn(2)
    route_rng, service_rng, network_rng, replica_rng = _generators(stage_seed, 4)
    dispatch, offsets = _arrivals(prep, _generators(traffic_seed, len(model.streams)))
    n = dispatch.shape[0]
    stream = np.repeat(np.arange(len(model.streams), dtype=np.int64), np.diff(offsets))
    group = prep.groups.of(offsets, dispatch)
    if spec.routing == "leastLoaded":
        table = _service_table(prep, service_rng, stream)
        candidate, queue = choose_least_loaded(
            model, prep.groups, group, dispatch, table, prep.queue_slot
        )
        service = np.where(
            queue >= 0, table[np.arange(n), prep.queue_slot[np.maximum(queue, 0)]], 0.0
        )
    else:
        candidate = choose_by_weight(route_rng, prep.groups, group)
        queue = _queue_of(prep, replica_rng, candidate)
        service = _service_times(prep, service_rng, queue)
    routed = np.flatnonzero(candidate != DROP)
    out = np.zeros(n)
    back = np.zeros(n)
    out[routed], back[routed] = sample_delays(
        network_rng, prep.delays, candidate[routed], dispatch[routed]
    )
    cut = _partitioned(prep, candidate, dispatch)
    arrival = dispatch + out
    storage = np.where(queue >= 0, prep.queue_storage[np.maximum(queue, 0)], 0.0)
    queued = (queue >= 0) & ~cut
    start, status = _run_queues(prep, queue, arrival, service, storage, dispatch, queued)
    latency = start + service + storage + back - dispatch
    outcome = np.full(n, OK, dtype=np.int8)
    outcome[latency > spec.timeout] = LATE
    outcome[status == QUEUE_EXPIRED] = EXPIRED
    outcome[(status == QUEUE_LOST) | cut] = LOST
    outcome[candidate == DROP] = DROPPED
    latency = np.where(outcome == OK, latency, spec.timeout)
    latency[outcome == DROPPED] = np.nan
    return Requests(
        dispatch, stream, candidate, queue, arrival, start, service, out + back, storage,
        latency, outcome,
    )  # fmt: skip


def _arrivals(prep: Prepared, rngs: list[np.random.Generator]) -> tuple[FloatArray, IntArray]:
    """Dispatch times grouped by stream (each sorted) and the streams' offsets."""
    model = prep.model
    spec = model.scenario.spec
    parts = []
    for s, stream in enumerate(model.streams):
        rate = prep.intensities[s]
        if rate is None:
            factor = stream.share * spec.demand_scale * trace_scale(model, stream.source.name)
            times = replay_trace(rngs[s], prep.traces[stream.source.name], factor, spec.duration)
        else:
            times = poisson_arrivals(rngs[s], rate)
        down = prep.faults.site_down[stream.site]
        if down:
            times = times[~inside(times, down)]
        parts.append(times)
    counts = np.array([p.shape[0] for p in parts], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    dispatch = np.concatenate(parts) if parts else np.zeros(0)
    return dispatch, offsets


def trace_scale(model: SimModel, source: str) -> float:
    """The ``scale`` of a source's trace entry."""
    return next(t.scale for t in model.scenario.spec.traffic if t.source == source)


def _queue_of(prep: Prepared, rng: np.random.Generator, candidate: IntArray) -> IntArray:
    """The queue of the chosen assignment; with one queue per replica, a replica at random."""
    routed = candidate != DROP
    assignment = prep.cand_assignment[np.where(routed, candidate, 0)]
    queue = prep.assignment_queue[assignment].copy()
    spread = prep.assignment_queues[assignment]
    if np.any(spread > 1):
        queue += (rng.random(candidate.shape[0]) * spread).astype(np.int64)
    queue[~routed] = -1
    return np.asarray(queue, dtype=np.int64)


def _grouped(keys: IntArray, n_keys: int) -> tuple[IntArray, IntArray]:
    """Positions sorted by key and offsets: key ``k`` has ``order[offsets[k]:offsets[k+1]]``.

    One stable sort (a radix sort for keys that fit 16 bits) instead of one
    scan of every request per key.
    """
    compact = keys.astype(np.int16) if n_keys < 2**15 else keys
    order = np.argsort(compact, kind="stable")
    offsets = np.concatenate([[0], np.cumsum(np.bincount(keys, minlength=n_keys))])
    return order, offsets.astype(np.int64)


def _service_times(prep: Prepared, rng: np.random.Generator, queue: IntArray) -> FloatArray:
    service = np.zeros(queue.shape[0])
    routed = np.flatnonzero(queue >= 0)
    order, offsets = _grouped(prep.queue_service[queue[routed]], len(prep.services))
    for index, distribution in enumerate(prep.services):
        mine = routed[order[offsets[index] : offsets[index + 1]]]
        service[mine] = distribution.sample(rng, mine.shape[0])
    return service


def _service_table(prep: Prepared, rng: np.random.Generator, stream: IntArray) -> FloatArray:
    """Service time of every request on every kind of hardware its workload runs on."""
    model = prep.model
    width = max((len(s) for s in prep.workload_services), default=1)
    table = np.zeros((stream.shape[0], width))
    stream_workload = np.array([s.workload for s in model.streams], dtype=np.int64)
    order, offsets = _grouped(stream_workload[stream], len(model.workloads))
    for w, kinds in enumerate(prep.workload_services):
        mine = order[offsets[w] : offsets[w + 1]]
        for slot, index in enumerate(kinds):
            table[mine, slot] = prep.services[index].sample(rng, mine.shape[0])
    return table


def _partitioned(
    prep: Prepared, candidate: IntArray, dispatch: FloatArray
) -> npt.NDArray[np.bool_]:
    cut = np.zeros(candidate.shape[0], dtype=bool)
    for c, windows in enumerate(prep.cand_cut):
        if windows:
            mine = np.flatnonzero(candidate == c)
            cut[mine] = inside(dispatch[mine], windows)
    return cut


def _run_queues(
    prep: Prepared,
    queue: IntArray,
    arrival: FloatArray,
    service: FloatArray,
    storage: FloatArray,
    dispatch: FloatArray,
    queued: npt.NDArray[np.bool_],
) -> tuple[FloatArray, Int8Array]:
    """Start of service and queue status per request (requests not queued: start = arrival)."""
    spec = prep.model.scenario.spec
    n = queue.shape[0]
    start = arrival.copy()
    status = np.full(n, -1, dtype=np.int8)
    index = np.flatnonzero(queued)
    # By arrival, then (stably) by queue: arrivals come in nearly sorted runs per
    # stream (timsort is quick on them) and queue numbers are small integers
    # (radix sort when they fit 16 bits).
    by_time = index[np.argsort(arrival[index], kind="stable")]
    n_queues = len(prep.model.queues)
    keys = queue[by_time].astype(np.int16 if n_queues < 2**15 else np.int64)
    order = by_time[np.argsort(keys, kind="stable")]
    q_sorted = queue[order]
    counts = np.bincount(q_sorted, minlength=len(prep.model.queues))
    q_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    a_sorted = arrival[order]
    s_sorted = service[order]
    if spec.deadline_propagation:
        deadline = dispatch[order] + spec.timeout
    else:
        deadline = np.full(order.shape[0], np.inf)
    start_sorted = np.empty(order.shape[0])
    status_sorted = np.empty(order.shape[0], dtype=np.int8)
    run_fifo_queues(
        a_sorted, s_sorted, deadline, q_offsets, prep.queue_servers,
        prep.down_start, prep.down_end, prep.down_offsets, start_sorted, status_sorted,
    )  # fmt: skip
    if prep.down_start.shape[0]:
        leave = start_sorted + s_sorted + storage[order]
        crashed = lost_in_crash(
            a_sorted, leave, status_sorted, q_offsets, prep.down_start, prep.down_offsets
        )
        status_sorted[crashed] = QUEUE_LOST
    start[order] = start_sorted
    status[order] = status_sorted
    return start, status
