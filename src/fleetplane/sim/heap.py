"""Binary min-heaps on slices of preallocated arrays, for the compiled kernels.

numba has no efficient container of floats with a key, and the kernels keep
thousands of small heaps (one per queue) in one flat array, so these work on
``array[base : base + size]`` in place.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fleetplane.sim.jit import kernel

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@kernel
def sift_down(values: FloatArray, base: int, size: int, index: int) -> None:
    """Restore the heap order below ``index`` after its value grew."""
    item = values[base + index]
    while True:
        child = 2 * index + 1
        if child >= size:
            break
        right = child + 1
        if right < size and values[base + right] < values[base + child]:
            child = right
        if values[base + child] >= item:
            break
        values[base + index] = values[base + child]
        index = child
    values[base + index] = item


@kernel
def push_keyed(keys: FloatArray, payload: IntArray, size: int, key: float, item: int) -> int:
    """Add ``(key, item)`` to the heap ``keys[:size]``; returns the new size."""
    index = size
    while index > 0:
        parent = (index - 1) // 2
        if keys[parent] <= key:
            break
        keys[index] = keys[parent]
        payload[index] = payload[parent]
        index = parent
    keys[index] = key
    payload[index] = item
    return size + 1


@kernel
def pop_keyed(keys: FloatArray, payload: IntArray, size: int) -> int:
    """Remove the smallest key (read ``keys[0]``, ``payload[0]`` first); returns the new size."""
    size -= 1
    if size == 0:
        return 0
    key = keys[size]
    item = payload[size]
    index = 0
    while True:
        child = 2 * index + 1
        if child >= size:
            break
        right = child + 1
        if right < size and keys[right] < keys[child]:
            child = right
        if keys[child] >= key:
            break
        keys[index] = keys[child]
        payload[index] = payload[child]
        index = child
    keys[index] = key
    payload[index] = item
    return size
