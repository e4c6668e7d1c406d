"""FIFO queues with c servers: the Kiefer–Wolfowitz recursion, compiled.

For one queue, with requests in order of arrival, the time each server next
becomes free is all the state there is: a request starts at
``max(arrival, earliest free server)`` and that server is then busy until
start + service. Kept as a min-heap this is O(log c) per request, and the
kernel runs every queue of the fleet in one pass over requests sorted by
(queue, arrival).

Two things beyond the textbook recursion:

* outages — while the queue's site is down, arriving requests are lost; when
  it comes back every server is free (what was in flight died with the site;
  :func:`lost_in_crash` finds those requests afterwards);
* deadlines — a request whose client has given up before it would start is
  skipped without using a server (deadline propagation, as gRPC does), so an
  overloaded queue keeps serving the requests that can still succeed.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fleetplane.sim.heap import sift_down
from fleetplane.sim.jit import kernel

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
StatusArray = npt.NDArray[np.int8]

SERVED = 0
LOST = 1  # the queue's site was down when it arrived, or crashed while it was there
EXPIRED = 2  # its client had timed out before a server was free


@kernel
def run_fifo_queues(
    arrival: FloatArray,
    service: FloatArray,
    deadline: FloatArray,
    queue_offsets: IntArray,
    servers: IntArray,
    down_start: FloatArray,
    down_end: FloatArray,
    down_offsets: IntArray,
    start: FloatArray,
    status: StatusArray,
) -> None:
    """Fill ``start`` and ``status`` for requests sorted by (queue, arrival).

    Requests of queue ``q`` are ``queue_offsets[q]:queue_offsets[q+1]``; its
    outages (sorted, disjoint) are ``down_offsets[q]:down_offsets[q+1]``.
    """
    n_queues = queue_offsets.shape[0] - 1
    widest = 1
    for q in range(n_queues):
        widest = max(widest, servers[q])
    free = np.empty(widest)
    for q in range(n_queues):
        c = servers[q]
        free[:c] = -np.inf
        outage = down_offsets[q]
        last_outage = down_offsets[q + 1]
        for k in range(queue_offsets[q], queue_offsets[q + 1]):
            a = arrival[k]
            while outage < last_outage and a >= down_end[outage]:
                # Clipping every value keeps the heap ordered (min is monotone).
                back = down_end[outage]
                for j in range(c):
                    free[j] = min(free[j], back)
                outage += 1
            if outage < last_outage and a >= down_start[outage]:
                start[k] = a
                status[k] = LOST
                continue
            begin = max(a, free[0])
            start[k] = begin
            if begin > deadline[k]:
                status[k] = EXPIRED
                continue
            status[k] = SERVED
            free[0] = begin + service[k]
            sift_down(free, 0, c, 0)


def lost_in_crash(
    arrival: FloatArray,
    leave: FloatArray,
    status: StatusArray,
    queue_offsets: IntArray,
    down_start: FloatArray,
    down_offsets: IntArray,
) -> npt.NDArray[np.bool_]:
    """Served requests that were inside their queue's site when it went down.

    Arrays are sorted by (queue, arrival) as for :func:`run_fifo_queues`;
    ``leave`` is when a request would have left the site (service and storage
    done). Outages are few, so this loops over them and slices the requests.
    """
    lost = np.zeros(arrival.shape[0], dtype=bool)
    for q in np.flatnonzero(np.diff(down_offsets)):
        lo, hi = queue_offsets[q], queue_offsets[q + 1]
        served = status[lo:hi] == SERVED
        for i in range(down_offsets[q], down_offsets[q + 1]):
            crash = down_start[i]
            lost[lo:hi] |= served & (arrival[lo:hi] < crash) & (leave[lo:hi] > crash)
    return lost
