"""Which assignment (and which of its queues) each request goes to.

A stream's candidates are the assignments the placement routes it to
(``placed``, nearest first) followed by failover-only ones (same residency
zone, nearest first). Between two changes in what the router knows is down,
routing is fixed, so each (stream, epoch) becomes one routing *group*:

* ``shares`` — the placement's shares; the share of a candidate known to be
  down moves to the nearest candidate that is up (placed before failover-only);
* ``nearest`` — everything to that same nearest candidate that is up;
* ``leastLoaded`` — the placed candidates that are up (failover-only ones when
  none is), chosen per request by :mod:`fleetplane.sim.balancer`.

A group with nowhere to go drops its requests (counted, never silently lost).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fleetplane.sim.balancer import join_shortest_queue
from fleetplane.sim.build import SimModel, Stream
from fleetplane.sim.faults import FaultPlan
from fleetplane.sim.intervals import Interval

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

DROP = -1


@dataclass(frozen=True)
class Groups:
    """Routing groups of all streams, flattened.

    Stream ``s`` has groups ``first[s] + i`` for its epochs ``i``, which start
    at ``epoch_starts[s][i]``. Group ``g``'s entries are
    ``offsets[g]:offsets[g+1]``: a global candidate index (or DROP) and a weight.
    """

    first: IntArray
    epoch_starts: list[FloatArray]
    offsets: IntArray
    candidate: IntArray
    weight: FloatArray

    def of(self, stream_offsets: IntArray, dispatch: FloatArray) -> IntArray:
        """The group of every request; requests are grouped by stream, in time order."""
        group = np.repeat(self.first, np.diff(stream_offsets))
        for s, starts in enumerate(self.epoch_starts):
            if starts.shape[0] > 1:
                lo, hi = stream_offsets[s], stream_offsets[s + 1]
                group[lo:hi] += np.searchsorted(starts, dispatch[lo:hi], side="right") - 1
        return group


def candidate_offsets(model: SimModel) -> IntArray:
    counts = [len(s.candidates) for s in model.streams]
    return np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def build_groups(model: SimModel, faults: FaultPlan) -> Groups:
    mode = model.scenario.spec.routing
    cand_base = candidate_offsets(model)
    first: list[int] = []
    epoch_starts: list[FloatArray] = []
    offsets = [0]
    candidates: list[int] = []
    weights: list[float] = []
    for s, stream in enumerate(model.streams):
        known = faults.candidate_known[s]
        starts = sorted({0.0, *(t for outages in known for w in outages for t in w)})
        first.append(len(offsets) - 1)
        epoch_starts.append(np.asarray(starts))
        for start in starts:
            up = [not _covers(outages, start) for outages in known]
            for local, weight in _epoch_weights(stream, up, mode).items():
                candidates.append(DROP if local == DROP else int(cand_base[s]) + local)
                weights.append(weight)
            offsets.append(len(candidates))
    return Groups(
        np.asarray(first, dtype=np.int64),
        epoch_starts,
        np.asarray(offsets, dtype=np.int64),
        np.asarray(candidates, dtype=np.int64),
        np.asarray(weights, dtype=np.float64),
    )


def _covers(intervals: list[Interval], t: float) -> bool:
    return any(start <= t < end for start, end in intervals)


def _epoch_weights(stream: Stream, up: list[bool], mode: str) -> dict[int, float]:
    """Local candidate index (or DROP) → share of the stream's requests in one epoch."""
    if stream.placed == 0:
        return {DROP: 1.0}
    placed = range(stream.placed)
    failover = next((i for i in placed if up[i]), None)
    if failover is None:
        failover = next((i for i in range(stream.placed, len(up)) if up[i]), None)
    if mode == "leastLoaded":
        usable = [i for i in placed if up[i]]
        if not usable and failover is not None:
            usable = [i for i in range(stream.placed, len(up)) if up[i]]
        return {i: 1.0 for i in usable} if usable else {DROP: 1.0}
    if mode == "nearest":
        return {DROP: 1.0} if failover is None else {failover: 1.0}
    weights: dict[int, float] = {}
    for i in placed:
        target = i if up[i] else failover
        key = DROP if target is None else target
        weights[key] = weights.get(key, 0.0) + stream.candidates[i].share
    return weights


def choose_by_weight(rng: np.random.Generator, groups: Groups, group: IntArray) -> IntArray:
    """A global candidate per request (or DROP), drawn with its group's weights.

    Every group's cumulative weights, normalised to end at 1, are shifted by the
    group's index, so one ``searchsorted`` over all groups picks for all requests.
    """
    entry_group = np.repeat(np.arange(groups.offsets.shape[0] - 1), np.diff(groups.offsets))
    totals = np.add.reduceat(groups.weight, groups.offsets[:-1])
    cumulative = np.cumsum(groups.weight) - np.repeat(
        np.cumsum(totals) - totals, np.diff(groups.offsets)
    )
    keys = entry_group + cumulative / totals[entry_group]
    # The last entry of each group ends exactly at the next integer.
    keys[groups.offsets[1:] - 1] = entry_group[groups.offsets[1:] - 1] + 1.0
    u = rng.random(group.shape[0])
    entry = np.searchsorted(keys, group + u, side="right")
    return groups.candidate[entry]


def choose_least_loaded(
    model: SimModel,
    groups: Groups,
    group: IntArray,
    dispatch: FloatArray,
    service: FloatArray,
    queue_slot: IntArray,
) -> tuple[IntArray, IntArray]:
    """Global candidate and queue per request (DROP, -1 when the group is empty).

    ``service[k, queue_slot[q]]`` is request ``k``'s service time on queue ``q``.
    """
    cand_assignment = np.array(
        [c.assignment for s in model.streams for c in s.candidates], dtype=np.int64
    )
    entry_offsets = [0]
    entry_queue: list[int] = []
    entry_candidate: list[int] = []
    for g in range(groups.offsets.shape[0] - 1):
        for j in range(groups.offsets[g], groups.offsets[g + 1]):
            c = int(groups.candidate[j])
            if c == DROP:
                continue
            for q in model.assignments[cand_assignment[c]].queues:
                entry_queue.append(q)
                entry_candidate.append(c)
        entry_offsets.append(len(entry_queue))
    n = dispatch.shape[0]
    if not entry_queue:
        return np.full(n, DROP, dtype=np.int64), np.full(n, -1, dtype=np.int64)
    queues = np.asarray(entry_queue, dtype=np.int64)
    order = np.argsort(dispatch, kind="stable")
    choice = np.empty(n, dtype=np.int64)
    join_shortest_queue(
        dispatch[order],
        group[order],
        np.asarray(entry_offsets, dtype=np.int64),
        queues,
        np.array([q.servers for q in model.queues], dtype=np.int64),
        service[order],
        queue_slot[queues],
        choice,
    )
    chosen = np.empty_like(choice)
    chosen[order] = choice
    safe = np.maximum(chosen, 0)
    candidate = np.where(chosen >= 0, np.asarray(entry_candidate, dtype=np.int64)[safe], DROP)
    return candidate, np.where(chosen >= 0, queues[safe], -1)
