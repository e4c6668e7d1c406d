"""Network delay of every request, sampled hop by hop along its route.

Each link's one-way delay is the lognormal fitted to its p50/p99
(:class:`fleetplane.latency.distributions.LogNormal`); a request draws one
delay per link on the way out and one per link on the way back, so a path's
distribution is the exact sum, not the Fenton–Wilkinson approximation the
placement engine uses (comparing the two is part of the point).

Loss uses the placement engine's model (``latency.network.loss_retransmit``):
a request or its response lost on any link of the round trip costs one
retransmission timeout, doubling on each further loss. Degraded links
(``linkDegraded`` faults) scale their delay and add loss for requests sent
during the fault.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fleetplane.latency.distributions import LogNormal, lognormal_from_moments, lognormal_moments
from fleetplane.latency.network import LossDelay, loss_retransmit
from fleetplane.sim.build import SimModel
from fleetplane.sim.faults import LinkEpochs

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

NO_LOSS = -1


@dataclass(frozen=True)
class DelayTables:
    hop_link: IntArray  # (routes, max hops), -1 past the end of a route
    mu: FloatArray  # per link
    sigma: FloatArray
    epochs: LinkEpochs
    candidate_route: IntArray  # per global candidate
    loss_row: IntArray  # (epochs, candidates): row of the loss tables, or NO_LOSS
    loss_cumulative: FloatArray  # (rows, terms): cumulative probabilities
    loss_delay: FloatArray  # (rows, terms): retransmission delay of each term


def build_delay_tables(model: SimModel, epochs: LinkEpochs) -> DelayTables:
    hops = max((len(r.links) for r in model.routes), default=0)
    hop_link = np.full((len(model.routes), hops), -1, dtype=np.int64)
    for i, route in enumerate(model.routes):
        hop_link[i, : len(route.links)] = route.links
    mu = np.array([d.mu for d in model.link_delay], dtype=np.float64)
    sigma = np.array([d.sigma for d in model.link_delay], dtype=np.float64)
    loss = np.array([link.spec.loss for link in model.fleet.links.values()], dtype=np.float64)
    candidate_route = np.array(
        [c.route for s in model.streams for c in s.candidates], dtype=np.int64
    )
    rows: list[LossDelay] = []
    route_row = np.full((epochs.factor.shape[0], len(model.routes)), NO_LOSS, np.int64)
    seen: dict[tuple[float, float, float], int] = {}
    for e in range(epochs.factor.shape[0]):
        for r, rtt, lost in _lossy_round_trips(hop_link, mu, sigma, loss, epochs, e):
            key = (rtt.mu, rtt.sigma, lost)
            if key not in seen:
                seen[key] = len(rows)
                rows.append(loss_retransmit(rtt, lost))
            route_row[e, r] = seen[key]
    loss_row = route_row[:, candidate_route]
    terms = max((len(t.delays) for t in rows), default=1)
    cumulative = np.ones((len(rows), terms))
    delay = np.zeros((len(rows), terms))
    for i, table in enumerate(rows):
        n = len(table.delays)
        cumulative[i, :n] = np.cumsum(table.weights)
        cumulative[i, n - 1 :] = 1.0
        delay[i, :n] = table.delays
        delay[i, n:] = table.delays[-1]
    return DelayTables(hop_link, mu, sigma, epochs, candidate_route, loss_row, cumulative, delay)


def _lossy_round_trips(
    hop_link: IntArray,
    mu: FloatArray,
    sigma: FloatArray,
    loss: FloatArray,
    epochs: LinkEpochs,
    e: int,
) -> list[tuple[int, LogNormal, float]]:
    """(route, round-trip lognormal, loss of request or response) for routes that lose packets.

    The placement engine's path model for every route at once: link moments
    add along the path (Fenton–Wilkinson), the round trip is two one-way
    trips, and the request or its response is lost if any link drops it.
    """
    if hop_link.shape[1] == 0:
        return []
    on_path = hop_link >= 0
    link = np.maximum(hop_link, 0)
    factor = epochs.factor[e]
    link_mean, link_var = lognormal_moments(mu + np.log(factor), sigma)
    mean = np.where(on_path, link_mean[link], 0.0).sum(axis=1)
    var = np.where(on_path, link_var[link], 0.0).sum(axis=1)
    link_keep = 1.0 - np.minimum(loss + epochs.extra_loss[e], 0.99)
    keep = np.where(on_path, link_keep[link], 1.0).prod(axis=1)
    rtt_mu, rtt_sigma = lognormal_from_moments(2.0 * mean, 2.0 * var)
    return [
        (int(r), LogNormal(float(rtt_mu[r]), float(rtt_sigma[r])), float(1.0 - keep[r] ** 2))
        for r in np.flatnonzero(keep < 1.0)
    ]


def sample_delays(
    rng: np.random.Generator, tables: DelayTables, candidate: IntArray, dispatch: FloatArray
) -> tuple[FloatArray, FloatArray]:
    """One-way delays (out, back) per request; ``candidate`` must be >= 0 everywhere."""
    n = candidate.shape[0]
    out = np.zeros(n)
    back = np.zeros(n)
    if n == 0:
        return out, back
    route = tables.candidate_route[candidate]
    degraded = tables.epochs.factor.shape[0] > 1
    epoch = tables.epochs.epoch_of(dispatch) if degraded else np.zeros(n, dtype=np.int64)
    for h in range(tables.hop_link.shape[1]):
        link = tables.hop_link[route, h]
        on_hop = np.flatnonzero(link >= 0)
        if on_hop.shape[0] == 0:
            continue
        hop = link[on_hop]
        z = rng.standard_normal((2, on_hop.shape[0]))
        delay = np.exp(tables.mu[hop] + tables.sigma[hop] * z)
        if degraded:
            delay *= tables.epochs.factor[epoch[on_hop], hop]
        out[on_hop] += delay[0]
        back[on_hop] += delay[1]
    row = tables.loss_row[epoch, candidate]
    lossy = np.flatnonzero(row != NO_LOSS)
    if lossy.shape[0]:
        rows = row[lossy]
        u = rng.random(lossy.shape[0])
        # Nearly every request loses nothing: only the others need the full table.
        hit = np.flatnonzero(u >= tables.loss_cumulative[rows, 0])
        rows, u = rows[hit], u[hit]
        term = (u[:, None] >= tables.loss_cumulative[rows]).sum(axis=1)
        term = np.minimum(term, tables.loss_delay.shape[1] - 1)
        out[lossy[hit]] += tables.loss_delay[rows, term]
    return out, back
