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

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fleetplane.latency.distributions import LogNormal
from fleetplane.latency.network import LossDelay, loss_retransmit, path_one_way, round_trip
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
    tables: dict[tuple[object, ...], int] = {}
    rows: list[LossDelay] = []
    loss_row = np.full((epochs.factor.shape[0], candidate_route.shape[0]), NO_LOSS, np.int64)
    for e in range(epochs.factor.shape[0]):
        link_loss = np.minimum(loss + epochs.extra_loss[e], 0.99)
        for c, r in enumerate(candidate_route):
            links = model.routes[r].links
            keep = math.prod(1.0 - float(link_loss[i]) for i in links)
            if keep >= 1.0:
                continue
            key = (r, *(float(epochs.factor[e, i]) for i in links), keep)
            if key not in tables:
                one_way = path_one_way(
                    [LogNormal(mu[i] + math.log(epochs.factor[e, i]), sigma[i]) for i in links]
                )
                tables[key] = len(rows)
                rows.append(loss_retransmit(round_trip(one_way), 1.0 - keep * keep))
            loss_row[e, c] = tables[key]
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
