"""Feasibility chunks worked out by this process and a forked helper, side by side.

Feasibility is the largest stage before the solve, and a workload's
candidate table depends only on the fleet, the policy and the chunk it is
screened with (the exact budget applies per chunk): chunks can be worked out
in any process, in any order, and come out the same. A helper forked once the
plan context is built shares the fleet and the index with this process
(copy on write), without pickling either. The two claim chunks one at a
time, biggest first, and the helper sends each of its chunks back as a few
flat arrays (candidates.pack_tables), which this process joins to its own
views.

Forking is only safe while no other thread runs: a lock one holds would stay
held in the child for good. So with threads about (a server planning in a
worker thread), on one core, or with one chunk, every chunk is worked out
here, one after the other. A chunk the helper could not deliver (an error,
or the helper killed) is worked out again here: an error then raises in this
process as it would have, and of two errors the earlier chunk's wins, as it
does without the helper.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized

from fleetplane.placement._internal.candidates import (
    Candidates,
    PackedTables,
    pack_tables,
    unpack_tables,
)
from fleetplane.placement._internal.rules import CacheStats
from fleetplane.placement._internal.workload_view import WorkloadView

# Works out the tables of one chunk of views (and settles what they leave behind).
Work = Callable[[Sequence[WorkloadView]], list[Candidates]]

# What the helper works on: set before it is forked, read only in the helper.
_forked: tuple[Work, list[list[WorkloadView]], CacheStats, _Claims] | None = None


def helper_allowed() -> bool:
    """Whether a helper process may be forked now (see the module's description)."""
    if "fork" not in multiprocessing.get_all_start_methods():
        return False
    if threading.active_count() > 1:
        return False
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (cores or 1) > 1


def tables(
    chunks: list[list[WorkloadView]],
    work: Work,
    stats: CacheStats,
    *,
    helper: bool,
    progress: Callable[[int], None] | None = None,
) -> list[Candidates]:
    """Every chunk's tables, in chunk order; ``progress`` gets the workloads done so far.

    ``stats`` (the rule evaluator's counters) also counts the helper's CEL
    evaluations and lookups, so they add up to the work both processes did.
    """
    if not helper or len(chunks) < 2:
        out: list[Candidates] = []
        for chunk in chunks:
            out += work(chunk)
            if progress is not None:
                progress(len(out))
        return out
    return _with_helper(chunks, work, stats, progress)


def _with_helper(
    chunks: list[list[WorkloadView]],
    work: Work,
    stats: CacheStats,
    progress: Callable[[int], None] | None,
) -> list[Candidates]:
    global _forked
    fork = multiprocessing.get_context("fork")
    # Both processes claim one chunk at a time, the next in this order, so neither is ever
    # left waiting on chunks queued for the other; biggest first, so that the one that
    # finishes first waits at most for a small chunk of the other's at the end.
    order = sorted(range(len(chunks)), key=lambda k: (-_estimate(chunks[k]), k))
    claims = _Claims(order, fork.Value("q", 0))
    _forked = (work, chunks, stats, claims)
    mine: dict[int, list[Candidates]] = {}
    failed: dict[int, Exception] = {}
    theirs: dict[int, list[Candidates] | None] = {}  # None: to be worked out here again
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()  # unwritten output would be written again by the helper
    pool = ProcessPoolExecutor(1, mp_context=fork)
    try:
        # Forked at the first submit, before the pool starts its own threads. One call per
        # chunk the helper might claim; those that find none left return at once.
        calls = [pool.submit(_helper_chunk) for _ in range(len(chunks) - 1)]
        while (k := claims.next()) is not None:
            try:
                mine[k] = work(chunks[k])
            except Exception as error:  # raised in chunk order below
                failed[k] = error
                claims.close()
            _receive(calls, chunks, stats, theirs, wait=False)
            if progress is not None:
                progress(sum(len(chunks[j]) for j in (*mine, *theirs)))
        _receive(calls, chunks, stats, theirs, wait=True)
        pool.shutdown(wait=True)  # every call has returned: the helper exits and is reaped
    except BaseException:
        # Interrupted (Ctrl-C, or the progress callback failed): the helper claims nothing
        # more, and this process does not wait for the chunk it is on.
        claims.close()
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        _forked = None
    out: list[Candidates] = []
    for k, chunk in enumerate(chunks):
        if k in failed:
            raise failed[k]
        found = mine[k] if k in mine else theirs.get(k)
        # Not delivered (the helper failed on it, or died) or not claimed (after an error).
        out += found if found is not None else work(chunk)
    if progress is not None:
        progress(len(out))
    return out


def _estimate(chunk: list[WorkloadView]) -> int:
    """A chunk's work, roughly: screening and pricing go per (profile, data source) pair."""
    return sum(len(view.profiles) * max(1, len(view.sources)) for view in chunk)


@dataclass
class _Claims:
    """The chunks in the order they are claimed, and (shared by both processes) the next."""

    order: list[int]
    at: Synchronized[int]

    def next(self) -> int | None:
        with self.at.get_lock():
            if self.at.value >= len(self.order):
                return None
            self.at.value += 1
            return self.order[self.at.value - 1]

    def close(self) -> None:
        """Leave no chunk to claim (after an error, the rest is not worth working out)."""
        with self.at.get_lock():
            self.at.value = len(self.order)


def _receive(
    calls: list[Future[_Delivery | None]],
    chunks: list[list[WorkloadView]],
    stats: CacheStats,
    theirs: dict[int, list[Candidates] | None],
    *,
    wait: bool,
) -> None:
    """Join the tables of the helper's finished calls to this process's views."""
    while calls and (wait or calls[0].done()):
        call = calls.pop(0)
        try:
            delivered = call.result()
        except Exception:
            # The helper died (BrokenProcessPool): what it claimed is worked out here.
            continue
        if delivered is None:
            continue
        k, packed, evaluations, lookups = delivered
        if packed is None:
            theirs[k] = None
            continue
        stats.evaluations += evaluations
        stats.lookups += lookups
        theirs[k] = unpack_tables(packed, chunks[k])


# What the helper sends for a chunk: its number, its tables (None: it failed; they are
# worked out again here) and the CEL work they took (evaluations, lookups).
_Delivery = tuple[int, PackedTables | None, int, int]


def _helper_chunk() -> _Delivery | None:
    """In the helper: the tables of the next chunk not claimed yet (None: none is left)."""
    assert _forked is not None, "the helper runs in a process forked by _with_helper"
    work, chunks, stats, claims = _forked
    k = claims.next()
    if k is None:
        return None
    evaluations, lookups = stats.evaluations, stats.lookups
    try:
        packed = pack_tables(work(chunks[k]))
    except Exception:
        claims.close()
        return k, None, 0, 0
    return k, packed, stats.evaluations - evaluations, stats.lookups - lookups
