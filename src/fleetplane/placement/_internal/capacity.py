"""What is left on every node and under every site's power budget, as the solver assigns.

Capacity is tracked per node, not per pool: three replicas needing 6 of a
node's 8 GPUs need three nodes, which pool-level totals would miss. Nodes of
a pool are identical, so a pool's nodes are a contiguous slice of flat arrays
and "how many replicas still fit" is a vectorised floor-division and sum.

Replicas are packed first-fit in node order. The same :class:`CapacityState`
replays any solver's assignments (``place`` raises nothing; it reports), so
the final verification and every solver share one definition of "fits".
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from fleetplane.placement._internal.fleet_index import FleetIndex, FloatArray, IntArray

_EPS = 1e-9
# Pools with at most this many nodes are counted node by node in plain Python (the same
# float operations as the vectorised count, without numpy's per-call overhead).
_SMALL_POOL = 24

# Versions of pool rows come from one counter shared by every state, so a version number is
# never reused: a copy that changed a row and the state it was copied from never agree on the
# row's version after they diverge (``exact.adopt`` copies a copy's versions back).
_VERSIONS = itertools.count(1)


@dataclass(frozen=True)
class Demand:
    """What one replica takes: per node (cpu, memory, accelerators of one entry) and site power."""

    cpu: float
    memory: float
    entry: int  # accelerator entry of the pool, -1 for none
    accelerators: int
    power: float  # peak watts counted against the site's power budget
    # The hash of the fields, computed once: a demand is a key of every fit lookup.
    _hash: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        key = (self.cpu, self.memory, self.entry, self.accelerators, self.power)
        object.__setattr__(self, "_hash", hash(key))

    def __hash__(self) -> int:
        return self._hash


class CapacityState:
    def __init__(self, index: FleetIndex) -> None:
        self.index = index
        counts = index.row_nodes
        self.start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        self._starts: list[int] = self.start.tolist()
        self.free_cpu = np.repeat(index.row_cpu, counts).astype(np.float64)
        self.free_memory = np.repeat(index.row_memory, counts).astype(np.float64)
        self.free_acc = np.repeat(index.row_acc_count, counts, axis=0)
        self.power_used = np.zeros(index.n_sites, dtype=np.float64)
        self.version = np.zeros(index.n_rows, dtype=np.int64)
        self.touched = np.zeros(index.n_rows, dtype=bool)
        # Python values of static per-row and per-site numbers, read on every fit lookup.
        self._row_site: list[int] = index.row_site.tolist()
        self._budget: list[float] = index.site_power_budget.tolist()
        self._site_rows: dict[int, IntArray] = {}
        # How many times replicas were given back (``release``): while it stands still, every
        # pool's room only ever shrinks, which lets a solver keep an evaluation that still fits.
        self.releases = 0
        # ``releases`` at the last release on each pool (0: none), and on each site with a
        # power budget: a release frees one pool's nodes and its site's power, so only that
        # pool, and the site's other pools where power is budgeted, may have grown.
        self.row_released = np.zeros(index.n_rows, dtype=np.int64)
        self.power_released = np.zeros(index.n_sites, dtype=np.int64)
        # (row, demand) -> (row version, replicas its nodes take): node-level fits of a pool
        # only change when something is placed on or released from it, which bumps its version.
        self._fits: dict[tuple[int, Demand], tuple[int, int]] = {}
        self._big = _BigPools()

    def copy(self) -> CapacityState:
        clone = object.__new__(CapacityState)
        clone.index = self.index
        clone.start = self.start
        clone._starts = self._starts
        clone.free_cpu = self.free_cpu.copy()
        clone.free_memory = self.free_memory.copy()
        clone.free_acc = self.free_acc.copy()
        clone.power_used = self.power_used.copy()
        clone.version = self.version.copy()
        clone.touched = self.touched.copy()
        clone._row_site = self._row_site
        clone._budget = self._budget
        clone._site_rows = self._site_rows
        clone.releases = self.releases
        clone.row_released = self.row_released.copy()
        clone.power_released = self.power_released.copy()
        clone._fits = {}
        clone._big = _BigPools()
        return clone

    def adopt(self, source: CapacityState) -> None:
        """Become what ``source``, a copy of this state, became (arrays copied in place)."""
        self.free_cpu[:] = source.free_cpu
        self.free_memory[:] = source.free_memory
        self.free_acc[:] = source.free_acc
        self.power_used[:] = source.power_used
        self.version[:] = source.version
        self.touched[:] = source.touched
        self.releases = max(self.releases, source.releases) + 1
        self.row_released[:] = self.releases  # any pool may have grown
        self.power_released[:] = self.releases
        # What this state remembered was counted on its own history, not the copy's.
        self._fits = {}
        self._big = _BigPools()

    def released_since(self, releases: int, rows: IntArray) -> bool:
        """Whether any of the pools ``rows`` may have grown since the count ``releases``."""
        if releases == self.releases:
            return False
        return bool(
            (self.row_released[rows] > releases).any()
            or (self.power_released[self.index.row_site[rows]] > releases).any()
        )

    def power_left(self, sites: IntArray) -> FloatArray:
        return np.asarray(self.index.site_power_budget[sites] - self.power_used[sites])

    def _node_fits(self, nodes: IntArray, demand: Demand) -> IntArray:
        fits = np.minimum(
            np.floor((self.free_cpu[nodes] + _EPS) / demand.cpu),
            np.floor((self.free_memory[nodes] + _EPS) / demand.memory),
        )
        if demand.entry >= 0 and demand.accelerators > 0:
            fits = np.minimum(
                fits, np.floor(self.free_acc[nodes, demand.entry] / demand.accelerators)
            )
        return np.maximum(fits, 0).astype(np.int64)

    def _pool_fits(self, row: int, demand: Demand) -> list[int]:
        """Replicas of ``demand`` each node of the pool still takes (``_node_fits``, as a list)."""
        first, end = self._starts[row], self._starts[row + 1]
        if end - first > _SMALL_POOL:
            return self._node_fits(np.arange(first, end), demand).tolist()  # type: ignore[no-any-return]
        if end - first <= 2:
            return [self._node_fit(node, demand) for node in range(first, end)]
        return self._fits_between(first, end, demand)

    def _node_fit(self, node: int, demand: Demand) -> int:
        """``_node_fits`` of one node, in plain Python."""
        fit = min(
            math.floor((self.free_cpu.item(node) + _EPS) / demand.cpu),
            math.floor((self.free_memory.item(node) + _EPS) / demand.memory),
        )
        if demand.entry >= 0 and demand.accelerators > 0:
            fit = min(fit, math.floor(self.free_acc.item(node, demand.entry) / demand.accelerators))
        return max(fit, 0)

    def _fits_between(self, first: int, end: int, demand: Demand) -> list[int]:
        """``_node_fits`` of nodes ``first`` to ``end`` in plain Python (few nodes)."""
        cpu, memory = demand.cpu, demand.memory
        free_cpu = self.free_cpu[first:end].tolist()
        free_memory = self.free_memory[first:end].tolist()
        fits = [
            min(math.floor((c + _EPS) / cpu), math.floor((m + _EPS) / memory))
            for c, m in zip(free_cpu, free_memory, strict=True)
        ]
        if demand.entry >= 0 and demand.accelerators > 0:
            per = demand.accelerators
            free_acc = self.free_acc[first:end, demand.entry].tolist()
            fits = [min(f, math.floor(a / per)) for f, a in zip(fits, free_acc, strict=True)]
        return [max(f, 0) for f in fits]

    def fit_count(self, row: int, demand: Demand) -> int:
        """How many more replicas fit on the pool, counting nodes and the site's power."""
        version = self.version.item(row)
        key = (row, demand)
        known = self._fits.get(key)
        if known is not None and known[0] == version:
            count = known[1]
        else:
            if version == 0 and not self.touched[row]:
                # Nothing placed on this pool yet: all its nodes are alike and full. (A state
                # whose arrays were copied from another carries that one's versions too.)
                count = int(self.index.row_nodes[row]) * self._empty_node_fits(row, demand)
            elif self._starts[row + 1] - self._starts[row] > _SMALL_POOL:
                count = self._big.count(self, row, version, demand)
            else:
                count = sum(self._pool_fits(row, demand))
            self._fits[key] = (version, count)
        if demand.power > 0:
            site = self._row_site[row]
            left = self._budget[site] - self.power_used.item(site)
            if math.isfinite(left):
                count = min(count, math.floor((left + _EPS) / demand.power))
        return max(count, 0)

    def fit_counts(self, rows: IntArray, demands: list[Demand]) -> IntArray:
        """:meth:`fit_count` for many rows (one demand per row; demands differ by profile)."""
        return np.array(
            [self.fit_count(int(r), d) for r, d in zip(rows, demands, strict=True)], dtype=np.int64
        )

    def _empty_node_fits(self, row: int, demand: Demand) -> int:
        index = self.index
        fits = min(
            math.floor((index.row_cpu[row] + _EPS) / demand.cpu),
            math.floor((index.row_memory[row] + _EPS) / demand.memory),
        )
        if demand.entry >= 0 and demand.accelerators > 0:
            per_node = index.row_acc_count[row, demand.entry]
            fits = min(fits, math.floor(per_node / demand.accelerators))
        return max(int(fits), 0)

    def place(self, row: int, replicas: int, demand: Demand) -> list[tuple[int, int]] | None:
        """Pack replicas first-fit into (node within pool, replicas); None if they do not fit."""
        if replicas > self.fit_count(row, demand):
            return None
        first, end = self._starts[row], self._starts[row + 1]
        placed = self._first_fit(row, replicas, demand)
        for node, take in placed:
            self._take(row, first + node, take, demand)
        site = self._row_site[row]
        self.power_used[site] += replicas * demand.power
        version = self.version[row] = next(_VERSIONS)
        if end - first > _SMALL_POOL:
            self._big.changed(row, version, [first + node for node, _ in placed])
        if demand.power > 0:
            self.version[self._rows_of_site(site)] = next(_VERSIONS)
        return placed

    def _first_fit(self, row: int, replicas: int, demand: Demand) -> list[tuple[int, int]]:
        """(node within pool, replicas): each node in order takes all it can until none remain."""
        first, end = self._starts[row], self._starts[row + 1]
        placed: list[tuple[int, int]] = []
        if replicas <= 0:
            return placed
        if end - first > _SMALL_POOL:
            # A big pool fills from its first nodes: start from its first open node
            # (_BigPools.walk), or skip the full ones in one pass when the walk is long
            # (a hub's pool has thousands).
            fits = self._big.fits(self, row, self.version.item(row), demand)
            walked = self._big.walk(row, demand, fits, replicas)
            if walked is not None:
                return walked
            open_nodes = np.flatnonzero(fits)
            room = np.cumsum(fits[open_nodes])
            last = int(np.searchsorted(room, replicas))
            for k, node in enumerate(open_nodes[: last + 1].tolist()):
                before = int(room[k - 1]) if k else 0
                placed.append((node, min(int(fits[node]), replicas - before)))
            return placed
        remaining = replicas
        for node, fit in enumerate(self._pool_fits(row, demand)):
            if remaining == 0:
                break
            take = min(fit, remaining)
            if take:
                placed.append((node, take))
                remaining -= take
        return placed

    def _rows_of_site(self, site: int) -> IntArray:
        rows = self._site_rows.get(site)
        if rows is None:
            rows = self._site_rows[site] = self.index.rows_of_site(site)
        return rows

    def release(
        self, row: int, nodes: list[tuple[int, int]] | tuple[tuple[int, int], ...], demand: Demand
    ) -> None:
        """Give back replicas placed with :meth:`place` (node within pool, replicas)."""
        first = self._starts[row]
        total = 0
        for node, count in nodes:
            self._take(row, first + node, -count, demand)
            total += count
        site = int(self.index.row_site[row])
        self.power_used[site] -= total * demand.power
        version = self.version[row] = next(_VERSIONS)
        self.releases += 1
        self.row_released[row] = self.releases
        if math.isfinite(self._budget[site]):
            self.power_released[site] = self.releases
        if self._starts[row + 1] - first > _SMALL_POOL:
            self._big.changed(row, version, [first + node for node, _ in nodes])
            self._big.released(row)

    def take(self, node: int, replicas: int, demand: Demand) -> None:
        self._take(int(np.searchsorted(self.start, node, side="right") - 1), node, replicas, demand)

    def _take(self, row: int, node: int, replicas: int, demand: Demand) -> None:
        self.touched[row] = True
        self.free_cpu[node] -= replicas * demand.cpu
        self.free_memory[node] -= replicas * demand.memory
        if demand.entry >= 0:
            self.free_acc[node, demand.entry] -= replicas * demand.accelerators

    def overcommitted(self) -> list[str]:
        """Every node or site whose allocations exceed what it has (empty when all is well)."""
        problems = []
        bad_nodes = np.flatnonzero(
            (self.free_cpu < -_EPS)
            | (self.free_memory < -_EPS)
            | np.any(self.free_acc < -_EPS, axis=1)
        )
        for node in bad_nodes.tolist():
            row = int(np.searchsorted(self.start, node, side="right") - 1)
            problems.append(
                f"{self.index.row_label(row)} node {node - int(self.start[row])} is over its "
                f"cpu, memory or accelerators"
            )
        over = np.flatnonzero(self.power_used > self.index.site_power_budget + 1e-6)
        for site in over.tolist():
            problems.append(
                f"site {self.index.sites[site].name} draws {self.power_used[site]:.0f} W, "
                f"over its {self.index.site_power_budget[site]:.0f} W budget"
            )
        return problems


# A big pool's remembered node fits are brought up to date node by node while at most this
# many of its nodes changed since; beyond that they are counted again in one pass.
_MAX_CHANGED = 64
# First fit walks a big pool node by node from its first open node for at most this many
# nodes; a longer walk is done in one vectorised pass instead.
_MAX_WALK = 128


class _BigPools:
    """Node fits of big pools per demand, brought up to date by the nodes that changed.

    A hub's pool has thousands of nodes, and every placement on it changes
    one or two of them: counting its room again for each demand asked would
    walk every node each time. Instead each (pool, demand) keeps its nodes'
    fits and the version they were counted at, each pool a log of (version,
    nodes changed) written by ``place`` and ``release``, and a lookup
    recounts only the nodes changed since. Counts are sums of the same
    per-node integers, so they equal a full recount.
    """

    def __init__(self) -> None:
        self._known: dict[tuple[int, Demand], tuple[int, IntArray, int]] = {}
        self._log: dict[int, list[tuple[int, list[int]]]] = {}
        # Per pool: per demand, a node before which every node was found full for it.
        self._open: dict[int, dict[Demand, int]] = {}

    def changed(self, row: int, version: int, nodes: list[int]) -> None:
        self._log.setdefault(row, []).append((version, nodes))

    def released(self, row: int) -> None:
        # Nodes found full may have room again.
        self._open.pop(row, None)

    def walk(
        self, row: int, demand: Demand, fits: IntArray, replicas: int
    ) -> list[tuple[int, int]] | None:
        """First fit of ``replicas`` over ``fits`` (the pool's, up to date), node by node.

        Until something is released on the pool its nodes only fill up, so the
        nodes before the first open one found last time are still full: the
        walk starts there. None when it would walk more than _MAX_WALK nodes.
        """
        starts = self._open.setdefault(row, {})
        end = fits.size
        node = starts.get(demand, -1)
        if node < 0:
            open_nodes = np.flatnonzero(fits)
            node = int(open_nodes[0]) if open_nodes.size else end
        # Each node is stepped over here once until the next release.
        while node < end and fits.item(node) == 0:
            node += 1
        starts[demand] = node
        placed: list[tuple[int, int]] = []
        limit = node + _MAX_WALK
        while replicas and node < end:
            if node >= limit:
                return None
            fit = fits.item(node)
            if fit:
                take = min(fit, replicas)
                placed.append((node, take))
                replicas -= take
            node += 1
        return placed

    def count(self, state: CapacityState, row: int, version: int, demand: Demand) -> int:
        return self._update(state, row, version, demand)[1]

    def fits(self, state: CapacityState, row: int, version: int, demand: Demand) -> IntArray:
        """Per node of the pool: replicas of ``demand`` it still takes (do not modify)."""
        return self._update(state, row, version, demand)[0]

    def _update(
        self, state: CapacityState, row: int, version: int, demand: Demand
    ) -> tuple[IntArray, int]:
        key = (row, demand)
        known = self._known.get(key)
        if known is not None and known[0] == version:
            return known[1], known[2]
        changed = self._changed_since(row, known[0]) if known is not None else None
        if known is None or changed is None:
            first, end = state._starts[row], state._starts[row + 1]
            fits = state._node_fits(np.arange(first, end), demand)
            count = int(fits.sum())
        else:
            _, fits, count = known
            first = state._starts[row]
            for node in changed:
                now = state._node_fit(node, demand)
                count += now - fits.item(node - first)
                fits[node - first] = now
        self._known[key] = (version, fits, count)
        return fits, count

    def _changed_since(self, row: int, version: int) -> set[int] | None:
        """Nodes of ``row`` changed after ``version`` (None: too many to update one by one)."""
        changed: set[int] = set()
        for logged, nodes in reversed(self._log.get(row, ())):
            if logged <= version:
                break
            changed.update(nodes)
            if len(changed) > _MAX_CHANGED:
                return None
        return changed
