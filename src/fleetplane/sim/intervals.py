"""Time intervals [start, end): merging, membership tests, flat per-owner tables."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

Interval = tuple[float, float]


def merge(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint intervals covering the same time; empty ones dropped."""
    merged: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def inside(times: FloatArray, intervals: Sequence[Interval]) -> BoolArray:
    """Which times fall in any of the (merged) intervals."""
    if not intervals:
        return np.zeros(times.shape[0], dtype=bool)
    edges = np.asarray(intervals, dtype=np.float64).ravel()
    # An odd count of edges at or below t means t is between a start and its end.
    return np.asarray(np.searchsorted(edges, times, side="right") % 2 == 1)


def flatten(per_owner: Sequence[Sequence[Interval]]) -> tuple[FloatArray, FloatArray, IntArray]:
    """``starts, ends, offsets``: owner ``i``'s intervals are ``offsets[i]:offsets[i+1]``."""
    counts = np.array([len(x) for x in per_owner], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    flat = [i for owner in per_owner for i in owner]
    starts = np.array([i[0] for i in flat], dtype=np.float64)
    ends = np.array([i[1] for i in flat], dtype=np.float64)
    return starts, ends, offsets
