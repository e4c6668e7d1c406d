"""The least-loaded balancer: join the shortest queue, compiled.

Each request, in dispatch order, goes to the candidate queue with the fewest
requests per server waiting or in service at that instant; ties go to the
earlier candidate (candidates are listed nearest first). The balancer sees
queue lengths without delay: it stands for a well-informed balancer (least
outstanding requests), not for one that learns load from stale reports.

Choosing couples the queues, so this pass runs its own Kiefer–Wolfowitz state
per queue (service starts at dispatch, network ignored) only to know the
lengths; the chosen queues are then simulated exactly, with network delays,
by :func:`fleetplane.sim.queues.run_fifo_queues` like every other routing.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fleetplane.sim.heap import pop_keyed, push_keyed, sift_down
from fleetplane.sim.jit import kernel

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@kernel
def join_shortest_queue(
    dispatch: FloatArray,
    group: IntArray,
    group_offsets: IntArray,
    entry_queue: IntArray,
    servers: IntArray,
    service: FloatArray,
    entry_slot: IntArray,
    choice: IntArray,
) -> None:
    """Fill ``choice`` (an entry index, -1 when the group is empty) for requests in dispatch order.

    Group ``g`` lists its candidate queues as entries
    ``group_offsets[g]:group_offsets[g+1]``; ``service[k, entry_slot[e]]`` is
    request ``k``'s service time on the queue of entry ``e``.
    """
    n_queues = servers.shape[0]
    heap_offsets = np.zeros(n_queues + 1, dtype=np.int64)
    for q in range(n_queues):
        heap_offsets[q + 1] = heap_offsets[q] + servers[q]
    free = np.full(heap_offsets[n_queues], -np.inf)
    in_system = np.zeros(n_queues, dtype=np.int64)
    n = dispatch.shape[0]
    done_at = np.empty(n)
    done_queue = np.empty(n, dtype=np.int64)
    pending = 0
    for k in range(n):
        now = dispatch[k]
        while pending > 0 and done_at[0] <= now:
            in_system[done_queue[0]] -= 1
            pending = pop_keyed(done_at, done_queue, pending)
        best = -1
        best_load = np.inf
        for e in range(group_offsets[group[k]], group_offsets[group[k] + 1]):
            q = entry_queue[e]
            load = (in_system[q] + 1.0) / servers[q]
            if load < best_load:
                best_load = load
                best = e
        choice[k] = best
        if best < 0:
            continue
        q = entry_queue[best]
        base = heap_offsets[q]
        begin = max(now, free[base])
        finish = begin + service[k, entry_slot[best]]
        free[base] = finish
        sift_down(free, base, servers[q], 0)
        in_system[q] += 1
        pending = push_keyed(done_at, done_queue, pending, finish, q)
