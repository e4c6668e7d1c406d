"""Network facts per (source site, serving site): round trip, loss, and egress price along the path.

Paths are the lowest-median paths of ``fleetplane.latency.network`` (the same
routing the simulator uses), so the price a plan pays for a request's bytes
is the price of the links those bytes actually cross, in the direction they
cross them. Per-source rows are computed on first use and cached: a fleet
has far fewer data-source sites than (site × site) pairs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from fleetplane.latency.distributions import LogNormal
from fleetplane.latency.network import PathTable, round_trip_many, shortest_median_paths
from fleetplane.model.fleet import Fleet
from fleetplane.placement._internal.fleet_index import BoolArray, FleetIndex, FloatArray, IntArray

# Registries: a model artifact is mirrored at every regional site (the usual
# pull-through registry per cloud region); each site pulls from the mirror
# with the cheapest path to it. Fleets without a regional site fall back to
# their HPC sites, then to every site.
HUB_TIERS = ("regional", "hpc")
# Source sites whose rows are worked out together (bounds the temporary (block x sites) arrays).
_FILL_BLOCK = 256


@dataclass(frozen=True)
class SourceRow:
    """Everything about reaching every site from one source site."""

    rtt_mu: FloatArray
    rtt_sigma: FloatArray
    loss: FloatArray  # probability a request or its response is lost on the round trip
    reachable: BoolArray
    price: FloatArray  # money per GB sent from the source along the path to each site


class Network:
    def __init__(self, fleet: Fleet, index: FleetIndex) -> None:
        self.index = index
        n = index.n_sites
        # Directed edges sorted like the latency module sorts them, so that of
        # parallel links the same one (lowest median, then first) is chosen here.
        edges: list[tuple[int, int, LogNormal]] = []
        directed: list[tuple[int, int, float, float, float]] = []
        reverse: list[tuple[int, int, float, float, float]] = []
        for name in sorted(fleet.links):
            spec = fleet.links[name].spec
            if spec.a not in index.site_index or spec.b not in index.site_index:
                continue
            a, b = index.site_index[spec.a], index.site_index[spec.b]
            dist = LogNormal.from_p50_p99(spec.latency.p50, spec.latency.p99)
            edges.append((a, b, dist))
            directed.append((a, b, dist.mu, spec.egress_price.a_to_b, spec.loss))
            reverse.append((b, a, dist.mu, spec.egress_price.b_to_a, spec.loss))
        # Undirected links enter routing as all a→b edges, then all b→a edges; of
        # parallel edges the lowest median wins, ties going to the first one.
        chosen: dict[tuple[int, int], tuple[float, float, float]] = {}
        for src, dst, mu, price, loss in directed + reverse:
            best = chosen.get((src, dst))
            if best is None or mu < best[0]:
                chosen[(src, dst)] = (mu, price, loss)
        self.paths: PathTable = (
            shortest_median_paths(n, edges, directed=False) if edges else _isolated(n)
        )
        keys = sorted(chosen)
        self._edge_keys = np.array([s * n + d for s, d in keys], dtype=np.int64)
        self._edge_price = np.array([chosen[k][1] for k in keys], dtype=np.float64)
        self._edge_keep = np.array([1.0 - chosen[k][2] for k in keys], dtype=np.float64)
        self._rows: dict[int, SourceRow] = {}
        self._hub_price: FloatArray | None = None
        # (source site × site) matrices; row s is filled when source(s) is first
        # asked for and SourceRow s views it. Allocated lazily and untouched rows
        # cost no memory, so gathering any (sources × sites) block is one take.
        self._matrix: tuple[FloatArray, FloatArray, FloatArray, BoolArray, FloatArray] | None = None

    def _path_sums(self, srcs: IntArray) -> tuple[FloatArray, FloatArray]:
        """Per source of ``srcs`` (rows): egress price and log-survival summed over each path."""
        n = self.index.n_sites
        sites = np.arange(n)
        pred = self.paths.predecessors[srcs].astype(np.int64)
        has_parent = pred >= 0
        parent = np.where(has_parent, pred, sites)
        if self._edge_keys.size:
            pos = np.searchsorted(self._edge_keys, parent * n + sites)
            pos = np.minimum(pos, self._edge_keys.size - 1)
            price = np.where(has_parent, self._edge_price[pos], 0.0)
            with np.errstate(divide="ignore"):
                log_keep = np.where(has_parent, np.log(self._edge_keep[pos]), 0.0)
        else:
            price = np.zeros(parent.shape)
            log_keep = np.zeros(parent.shape)
        # Pointer jumping: each site adds what its ancestor has accumulated and
        # jumps to the ancestor's ancestor; log2(path length) rounds reach the source.
        # A row done early keeps adding its root's zeros, which changes nothing.
        up = parent
        rows = np.arange(len(srcs))[:, None]
        while True:
            grand = up[rows, up]
            if np.array_equal(grand, up):
                return price, log_keep
            price = price + price[rows, up]
            log_keep = log_keep + log_keep[rows, up]
            up = grand

    def source(self, site: int) -> SourceRow:
        row = self._rows.get(site)
        if row is None:
            self.fill([site])
            row = self._rows[site]
        return row

    def fill(self, sites: Iterable[int]) -> None:
        """Work out the rows of every source site in ``sites`` not known yet, together.

        Every operation is elementwise along a row, so a row is the same
        whether it is filled alone or with others; together they take one
        pass of numpy calls per block instead of one per site.
        """
        todo = sorted({int(s) for s in sites} - self._rows.keys())
        for start in range(0, len(todo), _FILL_BLOCK):
            self._fill(np.array(todo[start : start + _FILL_BLOCK], dtype=np.int64))

    def _fill(self, srcs: IntArray) -> None:
        own = (np.arange(len(srcs)), srcs)
        mu, sigma = round_trip_many(self.paths.mu[srcs], self.paths.sigma[srcs])
        reachable = self.paths.reachable[srcs]
        reachable[own] = True
        mu = np.where(reachable, mu, np.inf)
        mu[own] = -np.inf
        sigma = np.where(reachable, sigma, 0.0)
        sigma[own] = 0.0
        price, log_keep = self._path_sums(srcs)
        price = np.where(reachable, price, np.inf)
        price[own] = 0.0
        # A request is lost if it or its response is dropped on any link.
        loss = np.where(reachable, -np.expm1(2.0 * log_keep), 0.0)
        loss[own] = 0.0
        m_mu, m_sigma, m_loss, m_reach, m_price = self.matrices()
        m_mu[srcs], m_sigma[srcs], m_loss[srcs] = mu, sigma, loss
        m_reach[srcs], m_price[srcs] = reachable, price
        for site in srcs.tolist():
            self._rows[site] = SourceRow(
                m_mu[site], m_sigma[site], m_loss[site], m_reach[site], m_price[site]
            )

    def matrices(self) -> tuple[FloatArray, FloatArray, FloatArray, BoolArray, FloatArray]:
        """(source site × site) rtt mu, rtt sigma, loss, reachable, price.

        Only rows of sites passed to :meth:`source` are filled; read no others.
        """
        if self._matrix is None:
            n = self.index.n_sites
            self._matrix = (
                np.empty((n, n)),
                np.empty((n, n)),
                np.empty((n, n)),
                np.empty((n, n), dtype=bool),
                np.empty((n, n)),
            )
        return self._matrix

    def hub_price(self) -> FloatArray:
        """Per site: money per GB to pull a model artifact from the cheapest registry mirror."""
        if self._hub_price is None:
            tiers = np.array([s.spec.tier for s in self.index.sites])
            hubs: IntArray = np.zeros(0, dtype=np.int64)
            for tier in HUB_TIERS:
                hubs = np.flatnonzero(tiers == tier)
                if hubs.size:
                    break
            if not hubs.size:
                hubs = np.arange(self.index.n_sites)
            # Mirrors pull from each other for free in this model: only the last
            # hop from a mirror to the consuming site is charged.
            self.fill(hubs.tolist())
            prices = np.vstack([self.source(int(h)).price for h in hubs])
            self._hub_price = prices.min(axis=0)
        return self._hub_price


def _isolated(n: int) -> PathTable:
    """The path table of sites without links: each reaches only itself."""
    mu = np.full((n, n), np.inf)
    np.fill_diagonal(mu, -np.inf)
    return PathTable(
        mu=mu,
        sigma=np.zeros((n, n)),
        reachable=np.eye(n, dtype=bool),
        predecessors=np.full((n, n), -9999, dtype=np.int32),
    )
