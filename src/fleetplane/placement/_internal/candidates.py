"""The candidate table: for each workload, every (pool, profile) that passed every hard filter.

This is the interface between feasibility/scoring and the solvers. A
candidate is one node pool of one site running one hardware profile. Per
candidate the table holds what a solver needs to decide and to price a
decision, with no further access to the fleet:

* resource use per replica (``demand(i)``: cpu, memory, accelerators of one
  pool entry, peak watts), to charge against node and power capacity;
* money per month: per replica (``rates``), per site (``model_cost``), per
  data source routed here (``egress[s, i]`` for all of source ``s``), and the
  policy's prefer penalty for the whole workload (``penalty``);
* which data sources it may serve (``source_ok[s, i]``: residency, a network
  path, and the latency targets met with no queueing at all) and the network
  round trip from each (``rtt_mu``/``rtt_sigma``/``loss``), so that replica
  counts for any set of sources can be computed (``sizing.replicas``).

A solver returns :class:`Allocation`s (candidate, replicas, share of each
source); ``verify`` re-checks them against every filter and capacity.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from itertools import accumulate
from math import prod
from typing import Any

import numpy as np

from fleetplane.placement._internal.capacity import Demand
from fleetplane.placement._internal.cost import ReplicaRates
from fleetplane.placement._internal.fleet_index import BoolArray, FloatArray, IntArray
from fleetplane.placement._internal.workload_view import WorkloadView


@dataclass
class Candidates:
    view: WorkloadView
    row: IntArray
    profile: IntArray
    entry: IntArray
    site: IntArray
    domain: IntArray  # failure domain code of the site
    storage: FloatArray  # seconds of storage reads per request
    svc_mean: FloatArray
    svc_cv: FloatArray
    concurrency: IntArray
    rates: ReplicaRates
    model_cost: FloatArray
    penalty: FloatArray
    source_ok: BoolArray  # (sources × candidates)
    rtt_mu: FloatArray  # (sources × candidates)
    rtt_sigma: FloatArray
    loss: FloatArray
    egress: FloatArray  # (sources × candidates) money/month for all of a source's bytes
    _demands: dict[int, Demand] = field(default_factory=dict, repr=False)
    # Feasible (pool, profile) rows left out of the table by the per-source/per-job
    # cap (feasibility.CANDIDATES_PER_*): a workload unplaced for capacity with
    # some left out is solved again on its whole table before it is reported.
    beyond_cap: int = 0
    # The tables feasibility built in one batch with this one (shared list), so
    # that scoring can compute per-candidate quantities for all of them in one
    # vectorised pass on first use (scoring.latency_estimate); None: alone.
    batch: list[Candidates] | None = field(default=None, repr=False, compare=False)
    # (sources × candidates) p99 ranking proxy, filled by scoring on first use.
    p99_estimate: FloatArray | None = field(default=None, repr=False, compare=False)

    @property
    def size(self) -> int:
        return int(self.row.size)

    def demand(self, i: int) -> Demand:
        """Resources one replica of candidate ``i`` takes."""
        found = self._demands.get(i)
        if found is None:
            found = self._demands[i] = Demand(*self.demand_fields(i))
        return found

    def demand_fields(self, i: int) -> tuple[float, float, int, int, float]:
        """:meth:`demand`'s fields (cpu, memory, entry, accelerators, power), without the object."""
        profile = self.view.profiles[int(self.profile[i])]
        return (
            self.view.cpu,
            self.view.memory,
            int(self.entry[i]),
            self.view.accelerators_per_replica(profile),
            float(self.rates.peak_power[i]),
        )


@dataclass(frozen=True)
class Allocation:
    """A solver's decision for one candidate: replicas and the share of each source served."""

    candidate: int
    replicas: int
    shares: tuple[float, ...]  # per source of the workload: fraction of its traffic routed here
    design_shares: tuple[float, ...]  # per source: fraction it must absorb (failover included)
    nodes: tuple[tuple[int, int], ...] = ()  # (node within pool, replicas), filled when packed
    weight: float = (
        1.0  # share of the whole workload it carries normally (policy terms scale by it)
    )


def concat_rates(parts: list[ReplicaRates]) -> ReplicaRates:
    return ReplicaRates(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in ReplicaRates.__dataclass_fields__)
    )


# A table's arrays over its candidates (or sources × candidates), in field order: every
# field declared as an array (the estimate scoring fills in later, optional, is not one).
_ARRAYS = tuple(
    f.name for f in fields(Candidates) if f.type in ("IntArray", "FloatArray", "BoolArray")
)
_RATES = tuple(ReplicaRates.__dataclass_fields__)


@dataclass
class _Column:
    """One array field of many tables: their values end to end, and how to cut them apart."""

    flat: np.ndarray | list[np.ndarray]  # a list when the tables' dtypes differ
    shapes: list[tuple[int, ...]]
    fortran: list[bool]  # laid out column-major (kept: numpy's sums follow the layout)

    @classmethod
    def of(cls, arrays: list[np.ndarray]) -> _Column:
        shapes = [a.shape for a in arrays]
        fortran = [bool(a.flags.f_contiguous and not a.flags.c_contiguous) for a in arrays]
        if len({a.dtype for a in arrays}) > 1:
            return cls(arrays, shapes, fortran)
        pieces = [a.ravel(order="F" if f else "C") for a, f in zip(arrays, fortran, strict=True)]
        flat = np.concatenate(pieces) if pieces else np.zeros(0)
        return cls(flat, shapes, fortran)

    def split(self) -> list[np.ndarray]:
        if isinstance(self.flat, list):
            return self.flat
        flat = self.flat
        ends = list(accumulate(prod(shape) for shape in self.shapes))
        starts = [0, *ends[:-1]]
        if all(len(shape) == 1 for shape in self.shapes):
            # A slice is the array itself (and a tenth of a reshape's time, for thousands).
            return [flat[a:b] for a, b in zip(starts, ends, strict=True)]
        return [
            flat[a:b].reshape(shape, order="F" if fortran else "C")
            for a, b, shape, fortran in zip(starts, ends, self.shapes, self.fortran, strict=True)
        ]


@dataclass
class PackedTables:
    """Candidate tables without their views: a few flat arrays, quick to pickle.

    Sending thousands of tables to another process as they are would pickle
    (and rebuild) hundreds of thousands of small arrays, a few µs each, and
    every table's view with the fleet model behind it; the receiver has the
    views already.
    """

    columns: dict[str, _Column]
    beyond_cap: list[int]


def pack_tables(tables: list[Candidates]) -> PackedTables:
    columns = {name: _Column.of([getattr(t, name) for t in tables]) for name in _ARRAYS}
    for name in _RATES:
        columns[f"rates.{name}"] = _Column.of([getattr(t.rates, name) for t in tables])
    return PackedTables(columns, [t.beyond_cap for t in tables])


def unpack_tables(packed: PackedTables, views: list[WorkloadView]) -> list[Candidates]:
    """The tables :func:`pack_tables` was given, for ``views`` (in the same order).

    Like the tables feasibility builds in one batch, they share one list as
    their ``batch``.
    """
    columns = {name: column.split() for name, column in packed.columns.items()}
    batch: list[Candidates] = []
    for i, view in enumerate(views):
        arrays: dict[str, Any] = {name: columns[name][i] for name in _ARRAYS}
        rates = ReplicaRates(*(columns[f"rates.{name}"][i] for name in _RATES))
        table = Candidates(view, rates=rates, **arrays)
        table.beyond_cap = packed.beyond_cap[i]
        table.batch = batch
        batch.append(table)
    return batch
