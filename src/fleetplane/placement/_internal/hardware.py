"""Which pools can run a profile: accelerator kind, model, memory and count, CPU arch.

Pools are grouped by their hardware signature (arch + accelerators) before
matching: a fleet of thousands of pools has only a few kinds of hardware, so
each (profile, request) pair is checked once per kind and the answer is
spread over the rows with one numpy indexing operation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fleetplane.model.infrastructure import Accelerator, NodePool
from fleetplane.model.units import format_size
from fleetplane.model.workload import AcceleratorRequest
from fleetplane.placement._internal.fleet_index import BoolArray, FleetIndex, IntArray
from fleetplane.placement._internal.workload_view import ProfileView, WorkloadView

NO_ACCELERATOR = -1

_AccSig = tuple[tuple[str, str, int, int], ...]
_HwSig = tuple[str, _AccSig]
_RequestKey = tuple[str, int, int, tuple[str, ...]] | None


@dataclass(frozen=True)
class HardwareMatch:
    """Per row: can the profile run there, and on which accelerator entry of the pool."""

    ok: BoolArray
    entry: IntArray  # index into pool.accelerators, NO_ACCELERATOR for CPU execution


def _signature(pool: NodePool) -> _HwSig:
    accs = tuple((a.kind, a.model, a.count, a.memory) for a in pool.accelerators)
    return pool.arch, accs


def _request_key(request: AcceleratorRequest | None) -> _RequestKey:
    if request is None:
        return None
    return request.kind, request.count, request.memory, tuple(request.models)


def describe_accelerators(accs: list[Accelerator]) -> str:
    if not accs:
        return "no accelerators"
    parts = []
    for a in accs:
        memory = f" {format_size(a.memory)}" if a.memory else ""
        parts.append(f"{a.count}× {a.kind} {a.model}{memory}")
    return ", ".join(parts)


def check_pool(
    pool: NodePool, profile: ProfileView, request: AcceleratorRequest | None
) -> tuple[int, str | None]:
    """(accelerator entry or NO_ACCELERATOR, None) when the profile fits, else (-1, why)."""
    if profile.accelerator_model is None:
        if request is not None:
            return NO_ACCELERATOR, (
                f"profile {profile.hardware!r} runs on CPU but the workload requests "
                f"{request.count}× {request.kind}"
            )
        if profile.arch is not None and pool.arch != profile.arch:
            return NO_ACCELERATOR, (
                f"profile {profile.hardware!r} needs {profile.arch} nodes, pool is {pool.arch}"
            )
        return NO_ACCELERATOR, None
    model = profile.accelerator_model
    for i, acc in enumerate(pool.accelerators):
        if acc.model != model:
            continue
        if request is None:
            return i, None
        if acc.kind != request.kind:
            return (
                NO_ACCELERATOR,
                f"{model} is a {acc.kind}, the workload requests a {request.kind}",
            )
        if request.models and model not in request.models:
            return NO_ACCELERATOR, (
                f"{model} is not among the allowed models {', '.join(request.models)}"
            )
        if acc.memory < request.memory:
            return NO_ACCELERATOR, (
                f"{model} has {format_size(acc.memory)} memory, "
                f"the workload needs {format_size(request.memory)}"
            )
        if acc.count < request.count:
            return NO_ACCELERATOR, (
                f"nodes have {acc.count}× {model}, one replica needs {request.count}"
            )
        return i, None
    return NO_ACCELERATOR, (
        f"profile {profile.hardware!r} needs a {model}; pool has "
        f"{describe_accelerators(pool.accelerators)}"
    )


class HardwareMatcher:
    """Matches profiles to every row, caching by (profile hardware, accelerator request)."""

    def __init__(self, index: FleetIndex) -> None:
        self._index = index
        codes: dict[_HwSig, int] = {}
        row_code = []
        self._representative: list[NodePool] = []
        for pool in index.pools:
            sig = _signature(pool)
            if sig not in codes:
                codes[sig] = len(codes)
                self._representative.append(pool)
            row_code.append(codes[sig])
        self._row_code = np.array(row_code, dtype=np.int64)
        self._cache: dict[tuple[str, _RequestKey], HardwareMatch] = {}

    def match(self, view: WorkloadView, profile: ProfileView) -> HardwareMatch:
        key = (profile.hardware, _request_key(view.accelerator))
        cached = self._cache.get(key)
        if cached is None:
            entries = []
            oks = []
            for pool in self._representative:
                entry, why = check_pool(pool, profile, view.accelerator)
                entries.append(entry)
                oks.append(why is None)
            cached = HardwareMatch(
                ok=np.array(oks, dtype=bool)[self._row_code],
                entry=np.array(entries, dtype=np.int64)[self._row_code],
            )
            self._cache[key] = cached
        return cached
