"""Network latency along paths: composing lognormal links, round trips, packet loss.

DESIGN.md asks for link distributions to be *composed numerically, not by adding
percentiles*: the p99 of a sum of independent delays is far below the sum of the
p99s (the links rarely all have a bad moment together), so adding percentiles
overstates tail latency on multi-hop paths. We compose by Fenton–Wilkinson moment
matching instead: means and variances of independent delays add exactly, and the sum
is represented by the lognormal with that mean and variance. That keeps every path a
two-parameter lognormal, so all-pairs tables stay two (n × n) arrays and the
end-to-end code can treat a 5-hop path exactly like a single link.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import dijkstra

from fleetplane.latency.distributions import (
    FloatArray,
    LogNormal,
    lognormal_from_moments,
    lognormal_moments,
)

IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: Linux's TCP_RTO_MIN: no retransmission timeout is shorter than this.
RTO_FLOOR = 0.200


def fenton_wilkinson(
    mus: npt.ArrayLike, sigmas: npt.ArrayLike, axis: int = -1
) -> tuple[FloatArray, FloatArray]:
    """Lognormal ``(mu, sigma)`` approximating the sum of independent lognormals along ``axis``.

    Means and variances add exactly; the result is the lognormal with that mean and
    variance. Degenerate terms (``sigma=0``, or the zero constant ``mu=-inf``) are fine.
    """
    means, variances = lognormal_moments(mus, sigmas)
    return lognormal_from_moments(means.sum(axis=axis), variances.sum(axis=axis))


def path_one_way(links: Sequence[LogNormal]) -> LogNormal:
    """One-way latency of a path of independent links (Fenton–Wilkinson; see module doc).

    An empty path (source and destination are the same site) is the zero constant.
    """
    if not links:
        return LogNormal.constant(0.0)
    mean = math.fsum(link.mean for link in links)
    var = math.fsum(link.var for link in links)
    return LogNormal.from_moments(mean, var)


def round_trip(one_way: LogNormal) -> LogNormal:
    """Round trip as two independent draws of the same one-way latency (moment matched)."""
    return LogNormal.from_moments(2.0 * one_way.mean, 2.0 * one_way.var)


def round_trip_many(mu: npt.ArrayLike, sigma: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Vectorised :func:`round_trip` over arrays of one-way ``(mu, sigma)``."""
    mean, var = lognormal_moments(mu, sigma)
    return lognormal_from_moments(2.0 * mean, 2.0 * var)


@dataclass(frozen=True)
class LossDelay:
    """Extra delay from retransmissions: ``delays[j]`` seconds with probability ``weights[j]``.

    ``delays[0]`` is 0 (no packet lost). The end-to-end model adds this discrete delay
    to the round trip as a mixture, so the tail it creates (a p99 jumping by an RTO
    once loss exceeds 1%) shows up in predicted percentiles.
    """

    weights: tuple[float, ...]
    delays: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.delays) or not self.weights:
            raise ValueError("LossDelay needs as many weights as delays, at least one")
        if any(w < 0.0 for w in self.weights) or not math.isclose(math.fsum(self.weights), 1.0):
            raise ValueError(f"LossDelay weights must be >= 0 and sum to 1, got {self.weights}")
        if any(not (math.isfinite(d) and d >= 0.0) for d in self.delays):
            raise ValueError(f"LossDelay delays must be finite and >= 0, got {self.delays}")

    @classmethod
    def none(cls) -> LossDelay:
        """No loss: always zero extra delay."""
        return cls((1.0,), (0.0,))

    @property
    def mean(self) -> float:
        return math.fsum(w * d for w, d in zip(self.weights, self.delays, strict=True))

    def quantile(self, q: float) -> float:
        """Smallest delay d with P(delay <= d) >= q."""
        cumulative = np.cumsum(self.weights)
        index = int(np.searchsorted(cumulative, q - 1e-15))
        return self.delays[min(index, len(self.delays) - 1)]

    def sample(self, rng: np.random.Generator, n: int) -> FloatArray:
        """``n`` independent draws."""
        return rng.choice(np.asarray(self.delays), size=n, p=np.asarray(self.weights))


def default_rto(rtt: LogNormal) -> float:
    """Retransmission timeout a TCP sender would use on this path.

    RFC 6298 sets RTO = SRTT + 4·RTTVAR; for a stationary RTT that is about
    ``mean + 4·std``. Linux never goes below 200 ms (TCP_RTO_MIN), which dominates on
    short paths, so that is the floor.
    """
    return max(RTO_FLOOR, rtt.mean + 4.0 * rtt.std)


def loss_retransmit(
    rtt: LogNormal,
    loss: float,
    rto: float | None = None,
    packets: int = 1,
    max_retries: int = 6,
) -> LossDelay:
    """Retransmission delay for a request of ``packets`` packets on a path with ``loss``.

    With probability ``p = 1 - (1 - loss)**packets`` at least one packet is lost and
    the sender waits one RTO (default :func:`default_rto`). The resent packet is lost
    again with probability ``loss``, and each further timeout doubles (exponential
    backoff), so ``j`` retransmissions cost ``rto·(2**j - 1)`` with probability
    ``p·loss**(j-1)·(1 - loss)``. Terms stop at ``max_retries``, or once their
    probability is below 1e-9; the remaining mass goes to the last term kept.
    """
    if not 0.0 <= loss < 1.0:
        raise ValueError(f"loss must be a probability in [0, 1), got {loss}")
    if packets < 1 or max_retries < 1:
        raise ValueError(f"packets and max_retries must be >= 1, got {packets}, {max_retries}")
    timeout = default_rto(rtt) if rto is None else rto
    if not (math.isfinite(timeout) and timeout > 0.0):
        raise ValueError(f"rto must be positive and finite seconds, got {timeout}")
    p_first = 1.0 - (1.0 - loss) ** packets
    if p_first == 0.0:
        return LossDelay.none()
    weights, delays = [1.0 - p_first], [0.0]
    remaining = p_first
    for j in range(1, max_retries + 1):
        w = remaining * (1.0 - loss) if j < max_retries else remaining
        weights.append(w)
        delays.append(timeout * (2.0**j - 1.0))
        remaining -= w
        if remaining < 1e-9:
            weights[-1] += remaining
            break
    return LossDelay(tuple(weights), tuple(delays))


def path_loss(losses: Sequence[float]) -> float:
    """Loss probability of a path whose links drop packets independently."""
    return 1.0 - math.prod(1.0 - p for p in losses)


@dataclass(frozen=True)
class PathTable:
    """All-pairs one-way latency along lowest-median paths.

    ``mu[s, d]``, ``sigma[s, d]`` are the composed lognormal of the path from site ``s``
    to site ``d``. The diagonal is the zero constant (``mu=-inf, sigma=0``) and
    unreachable pairs are "never" (``mu=+inf, sigma=0``, ``reachable`` False); the
    vectorised lognormal and end-to-end functions understand both conventions.
    ``predecessors[s, d]`` is the hop before ``d`` on that path (-9999 if none).
    """

    mu: FloatArray
    sigma: FloatArray
    reachable: BoolArray
    predecessors: npt.NDArray[np.int32]

    def path(self, src: int, dst: int) -> list[int]:
        """Sites visited from ``src`` to ``dst`` (both included); [] when unreachable."""
        if not self.reachable[src, dst]:
            return []
        hops = [dst]
        while hops[-1] != src:
            hops.append(int(self.predecessors[src, hops[-1]]))
        return hops[::-1]

    def one_way(self, src: int, dst: int) -> LogNormal:
        """The composed one-way latency; ValueError if ``dst`` is unreachable from ``src``."""
        if not self.reachable[src, dst]:
            raise ValueError(f"site {dst} is not reachable from site {src}")
        return LogNormal(float(self.mu[src, dst]), float(self.sigma[src, dst]))


def _edge_arrays(
    n_sites: int, edges: Sequence[tuple[int, int, LogNormal]], directed: bool
) -> tuple[IntArray, IntArray, FloatArray, FloatArray]:
    """Deduplicated edges (src, dst, mu, sigma), keeping the lowest median per pair."""
    if not edges:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, np.zeros(0), np.zeros(0)
    src = np.array([e[0] for e in edges], dtype=np.int64)
    dst = np.array([e[1] for e in edges], dtype=np.int64)
    mu = np.array([e[2].mu for e in edges], dtype=np.float64)
    sigma = np.array([e[2].sigma for e in edges], dtype=np.float64)
    if src.min() < 0 or max(src.max(), dst.max()) >= n_sites or np.any(src == dst):
        raise ValueError(f"edges must join two different sites numbered 0..{n_sites - 1}")
    if not np.all(np.isfinite(mu)):
        raise ValueError("every link needs a positive median latency (found a zero link)")
    if not directed:
        src, dst = np.concatenate([src, dst]), np.concatenate([dst, src])
        mu, sigma = np.tile(mu, 2), np.tile(sigma, 2)
    order = np.lexsort((mu, dst, src))
    src, dst, mu, sigma = src[order], dst[order], mu[order], sigma[order]
    keep = np.ones(src.size, dtype=bool)
    keep[1:] = (src[1:] != src[:-1]) | (dst[1:] != dst[:-1])
    return src[keep], dst[keep], mu[keep], sigma[keep]


def shortest_median_paths(
    n_sites: int, edges: Sequence[tuple[int, int, LogNormal]], directed: bool = False
) -> PathTable:
    """Route every (src, dst) pair along its lowest total-median path and compose it.

    Dijkstra (scipy) runs on median one-way latency, which is what a latency-aware
    routing metric adds up; the chosen path's links are then composed with
    Fenton–Wilkinson (module doc). Two things keep 2,000 sites well under a second:

    * a site with a single outgoing link (a typical edge site) reaches everything
      through that link, so its row is its neighbour's row plus one link and needs no
      Dijkstra run of its own;
    * composition walks each source's shortest-path tree with whole-matrix pointer
      jumping (``log2(depth)`` steps) instead of walking ``n²`` paths in Python.

    Links are bidirectional unless ``directed``; parallel links keep the lowest median.
    """
    if n_sites < 1:
        raise ValueError(f"need at least one site, got {n_sites}")
    src, dst, mu, sigma = _edge_arrays(n_sites, edges, directed)
    edge_mean, edge_var = lognormal_moments(mu, sigma)
    graph = csr_matrix((np.exp(mu), (src, dst)), shape=(n_sites, n_sites))
    via_edge = _single_link_sources(n_sites, src, dst)
    direct = np.flatnonzero(via_edge < 0)
    pred_d = dijkstra(graph, directed=True, indices=direct, return_predecessors=True)[1]
    rows = _Rows(np.empty((n_sites, n_sites), dtype=np.int32),
                 np.empty((n_sites, n_sites)), np.empty((n_sites, n_sites)))
    rows.pred[direct] = pred_d
    rows.mean[direct], rows.var[direct] = _compose_along_trees(
        pred_d, src * n_sites + dst, edge_mean, edge_var
    )
    derived = np.flatnonzero(via_edge >= 0)
    link = via_edge[derived]
    _extend_rows(rows, derived, dst[link], edge_mean[link], edge_var[link])
    reachable = rows.pred >= 0
    np.fill_diagonal(reachable, True)
    path_mu, path_sigma = _lognormal_in_place(rows.mean, rows.var)
    path_mu[~reachable] = np.inf
    path_sigma[~reachable] = 0.0
    return PathTable(path_mu, path_sigma, reachable, rows.pred)


def _lognormal_in_place(mean: FloatArray, var: FloatArray) -> tuple[FloatArray, FloatArray]:
    """:func:`lognormal_from_moments` reusing the (n × n) input buffers as outputs.

    On 2,000 sites the transcendental passes dominate, so avoiding temporaries counts.
    Zero means (the diagonal, unreachable pairs) become ``mu=-inf, sigma=0``.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        var /= mean
        var /= mean
        np.log1p(var, out=var)
        var[mean == 0.0] = 0.0
        np.log(mean, out=mean)
    mean -= 0.5 * var
    return mean, np.sqrt(var, out=var)


@dataclass(frozen=True)
class _Rows:
    """All-pairs working arrays filled row by row: predecessor, path mean and variance."""

    pred: npt.NDArray[np.int32]
    mean: FloatArray
    var: FloatArray


def _single_link_sources(n: int, src: IntArray, dst: IntArray) -> IntArray:
    """Per site, the index of its only outgoing link when its row can be derived, else -1.

    A site whose single link goes to a site with several links routes everything via
    that neighbour (a detour back through itself can never be shorter).
    """
    out_degree = np.bincount(src, minlength=n)
    first = np.searchsorted(src, np.arange(n))
    neighbour = dst[np.minimum(first, max(src.size - 1, 0))] if src.size else first
    single = (out_degree == 1) & (out_degree[neighbour] != 1)
    return np.where(single, first, -1)


def _extend_rows(
    rows: _Rows, sites: IntArray, via: IntArray, mean: FloatArray, var: FloatArray
) -> None:
    """Fill the rows of single-link ``sites`` from the rows of their neighbours ``via``."""
    rows.pred[sites] = rows.pred[via]
    rows.mean[sites] = rows.mean[via] + mean[:, None]
    rows.var[sites] = rows.var[via] + var[:, None]
    rows.pred[sites, via] = sites
    rows.pred[sites, sites] = -9999
    rows.mean[sites, sites] = 0.0
    rows.var[sites, sites] = 0.0


def _compose_along_trees(
    pred: npt.NDArray[np.int32], edge_keys: IntArray, edge_mean: FloatArray, edge_var: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """Sum link means and variances from every site up to the root of its source's tree.

    ``pred`` has one row per source. Pointer jumping: each site starts with the moments
    of the link from its parent; then every site adds what its current ancestor has
    accumulated and jumps to that ancestor's ancestor, so ``log2(depth)`` whole-array
    steps reach the root. Every gather stays within one row, which is cache friendly.
    """
    n_rows, n = pred.shape
    if edge_keys.size == 0:
        # No links: every site is its own tree and nothing has a parent link.
        return np.zeros(pred.shape), np.zeros(pred.shape)
    up = pred.astype(np.intp)
    orphan = up < 0
    np.copyto(up, np.broadcast_to(np.arange(n), up.shape), where=orphan)
    lookup = np.zeros(n * n, dtype=np.int32)
    lookup[edge_keys] = np.arange(edge_keys.size, dtype=np.int32)
    edge = lookup[up * n + np.arange(n)]
    mean, var = edge_mean[edge], edge_var[edge]
    mean[orphan] = 0.0
    var[orphan] = 0.0
    up += np.arange(0, n_rows * n, n)[:, None]
    flat_up, flat_mean, flat_var = up.ravel(), mean.ravel(), var.ravel()
    grand, scratch = np.empty_like(flat_up), np.empty_like(flat_mean)
    while True:
        np.take(flat_up, flat_up, out=grand)
        if np.array_equal(grand, flat_up):
            return mean, var
        flat_mean += np.take(flat_mean, flat_up, out=scratch)
        flat_var += np.take(flat_var, flat_up, out=scratch)
        flat_up, grand = grand, flat_up
