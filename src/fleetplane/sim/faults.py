"""What the scenario's faults mean for queues, streams and links, as time intervals.

* A site that is down loses every request that arrives at or is inside it;
  its data sources send nothing (their clients are at the site too).
* A partition between two sites cuts requests between them and every route
  that uses a Link joining them directly.
* A degraded link multiplies its latency and adds loss for requests sent
  while the fault lasts.

Routers learn of an outage ``detectionDelay`` after it starts (when failover
is on) and route around it until it ends; requests sent in between are lost
and time out.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from fleetplane.sim.build import SimModel
from fleetplane.sim.intervals import Interval, merge

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class FaultWindow:
    """A fault as the report shows it."""

    kind: str
    target: str
    start: float
    end: float


@dataclass(frozen=True)
class LinkEpochs:
    """Link state over time: epoch ``e`` is ``[edges[e], edges[e+1])``.

    ``factor[e, l]`` multiplies link ``l``'s latency, ``extra_loss[e, l]`` adds
    to its loss. Without degradations there is one epoch and nothing changes.
    """

    edges: FloatArray
    factor: FloatArray
    extra_loss: FloatArray

    def epoch_of(self, times: FloatArray) -> npt.NDArray[np.int64]:
        index = np.searchsorted(self.edges, times, side="right") - 1
        return np.asarray(np.clip(index, 0, self.factor.shape[0] - 1), dtype=np.int64)


@dataclass(frozen=True)
class FaultPlan:
    windows: list[FaultWindow]
    site_down: list[list[Interval]]  # per site
    candidate_cut: list[list[list[Interval]]]  # per stream, per candidate: partitioned
    candidate_known: list[list[list[Interval]]]  # per stream, per candidate: routed around
    links: LinkEpochs


def plan_faults(model: SimModel) -> FaultPlan:
    spec = model.scenario.spec
    n_sites, n_links = len(model.site_names), len(model.link_names)
    site_down: list[list[Interval]] = [[] for _ in range(n_sites)]
    partitions: list[tuple[int, int, Interval]] = []
    degraded: list[tuple[int, float, float, Interval]] = []
    windows: list[FaultWindow] = []
    link_index = {name: i for i, name in enumerate(model.link_names)}
    for fault in spec.faults:
        window = (fault.at, fault.at + fault.duration)
        if fault.type == "siteDown" and fault.site is not None:
            site_down[model.site_index[fault.site]].append(window)
            target = fault.site
        elif fault.type == "partition" and fault.site is not None and fault.peer is not None:
            pair = (model.site_index[fault.site], model.site_index[fault.peer])
            partitions.append((*pair, window))
            target = f"{fault.site} | {fault.peer}"
        elif fault.link is not None:
            degraded.append(
                (link_index[fault.link], fault.latency_factor, fault.extra_loss, window)
            )
            target = fault.link
        windows.append(FaultWindow(fault.type, target, *window))
    site_down = [merge(w) for w in site_down]
    cut, known = _candidate_outages(model, site_down, partitions)
    return FaultPlan(windows, site_down, cut, known, _link_epochs(n_links, degraded))


def _candidate_outages(
    model: SimModel,
    site_down: list[list[Interval]],
    partitions: list[tuple[int, int, Interval]],
) -> tuple[list[list[list[Interval]]], list[list[list[Interval]]]]:
    spec = model.scenario.spec
    link_ends = [
        frozenset((model.site_index[link.spec.a], model.site_index[link.spec.b]))
        for link in model.fleet.links.values()
    ]
    cut_all: list[list[list[Interval]]] = []
    known_all: list[list[list[Interval]]] = []
    for stream in model.streams:
        cut_stream: list[list[Interval]] = []
        known_stream: list[list[Interval]] = []
        for candidate in stream.candidates:
            route = model.routes[candidate.route]
            ends = {frozenset((route.src, route.dst))} | {link_ends[i] for i in route.links}
            cut = merge(w for a, b, w in partitions if frozenset((a, b)) in ends)
            outage = merge([*cut, *site_down[route.dst]])
            cut_stream.append(cut)
            known_stream.append(
                merge((s + spec.detection_delay, e) for s, e in outage) if spec.failover else []
            )
        cut_all.append(cut_stream)
        known_all.append(known_stream)
    return cut_all, known_all


def _link_epochs(n_links: int, degraded: list[tuple[int, float, float, Interval]]) -> LinkEpochs:
    edges = sorted({0.0, *(t for *_, w in degraded for t in w)})
    edges_array = np.array([*edges, np.inf])
    middle = 0.5 * (edges_array[:-1] + np.minimum(edges_array[1:], edges_array[:-1] + 1.0))
    factor = np.ones((len(edges), n_links))
    extra = np.zeros((len(edges), n_links))
    for link, k, loss, (start, end) in degraded:
        active = (middle >= start) & (middle < end)
        factor[active, link] *= k
        extra[active, link] += loss
    return LinkEpochs(edges_array, factor, np.minimum(extra, 0.99))
