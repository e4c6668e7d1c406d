"""Turn a fleet, a placement and a scenario into the simulator's flat description.

Everything the replications share is computed once here: which workloads are
simulated, the queues (one per assignment, or one per replica), the request
streams (one per workload × data source) with the assignments each may be
routed to, and the network routes between sites. Names become indices so the
hot loops work on arrays.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from fleetplane.errors import SimulationError, did_you_mean
from fleetplane.latency.distributions import LogNormal, ServiceTime
from fleetplane.latency.network import PathTable, shortest_median_paths
from fleetplane.model.fleet import Fleet
from fleetplane.model.infrastructure import DataSource, Site
from fleetplane.model.placement import Assignment, Placement, WorkloadPlacement
from fleetplane.model.scenario import Scenario
from fleetplane.model.workload import REQUEST_CLASSES, Workload

# Shares a placement gives a source should add up to 1; beyond this we say so.
_SHARE_TOLERANCE = 0.01


@dataclass(frozen=True)
class SimWorkload:
    name: str
    workload: Workload
    planned: WorkloadPlacement


@dataclass(frozen=True)
class SimAssignment:
    workload: int
    site: int
    assignment: Assignment
    queues: tuple[int, ...]


@dataclass(frozen=True)
class SimQueue:
    """A FIFO queue and the servers that work on it."""

    workload: int
    assignment: int
    site: int
    servers: int
    service: ServiceTime
    storage: float  # seconds of storage reads per request, outside the queue


@dataclass(frozen=True)
class Candidate:
    """An assignment a stream may send requests to."""

    assignment: int
    share: float  # of the stream's requests, as placed; 0 for failover-only candidates
    route: int
    median: float  # one-way median of the route, for "nearest"


@dataclass(frozen=True)
class Stream:
    """The requests one data source sends to one workload."""

    workload: int
    source: DataSource
    site: int
    share: float  # the workload's share of the source's requests
    candidates: tuple[Candidate, ...]
    placed: int  # candidates[:placed] carry the placement's shares, nearest first


@dataclass(frozen=True)
class Route:
    src: int
    dst: int
    links: tuple[int, ...]
    forward: tuple[bool, ...]  # True when the hop goes from the link's a to its b
    median: float  # sum of the links' median one-way latencies (the routing metric)


@dataclass
class SimModel:
    fleet: Fleet
    placement: Placement
    scenario: Scenario
    site_names: list[str]
    site_index: dict[str, int]
    link_names: list[str]
    link_delay: list[LogNormal]
    workloads: list[SimWorkload]
    assignments: list[SimAssignment]
    queues: list[SimQueue]
    streams: list[Stream]
    routes: list[Route]
    # Workloads that serve requests but are not simulated, with the reason.
    skipped: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def build_model(fleet: Fleet, placement: Placement, scenario: Scenario) -> SimModel:
    """Index everything the simulation needs; SimulationError when the placement does not fit."""
    site_names = list(fleet.sites)
    site_index = {name: i for i, name in enumerate(site_names)}
    link_names = list(fleet.links)
    link_delay = [
        LogNormal.from_p50_p99(link.spec.latency.p50, link.spec.latency.p99)
        for link in fleet.links.values()
    ]
    model = SimModel(
        fleet=fleet,
        placement=placement,
        scenario=scenario,
        site_names=site_names,
        site_index=site_index,
        link_names=link_names,
        link_delay=link_delay,
        workloads=[],
        assignments=[],
        queues=[],
        streams=[],
        routes=[],
    )
    _add_workloads(model)
    if not model.workloads:
        raise SimulationError(
            f"placement {placement.name!r} places no request-serving workload with demand, "
            "so there is nothing to simulate"
        )
    _add_streams(model, _Routing(model))
    return model


def _add_workloads(model: SimModel) -> None:
    fleet, placement = model.fleet, model.placement
    planned_names = set()
    for planned in placement.spec.workloads:
        planned_names.add(planned.workload)
        workload = fleet.workloads.get(planned.workload)
        if workload is None:
            hint = did_you_mean(planned.workload, list(fleet.workloads))
            raise SimulationError(
                f"placement {placement.name!r} places workload {planned.workload!r}, "
                f"which the fleet does not define" + (f" ({hint})" if hint else "")
            )
        if workload.spec.class_ not in REQUEST_CLASSES:
            continue
        if not planned.assignments:
            model.skipped[workload.name] = "the placement has no assignment for it"
            continue
        index = len(model.workloads)
        model.workloads.append(SimWorkload(workload.name, workload, planned))
        for assignment in planned.assignments:
            _add_assignment(model, index, workload, assignment)
    for name, workload in fleet.workloads.items():
        if workload.spec.class_ in REQUEST_CLASSES and name not in planned_names:
            reasons = [u.reason for u in placement.spec.unplaceable if u.workload == name]
            model.skipped[name] = (
                f"unplaceable: {reasons[0]}" if reasons else "not in the placement"
            )


def _add_assignment(
    model: SimModel, workload_index: int, workload: Workload, a: Assignment
) -> None:
    site = model.fleet.sites.get(a.site)
    if site is None:
        raise SimulationError(f"workload {workload.name!r} is placed on unknown site {a.site!r}")
    profile = next((p for p in workload.spec.profiles if p.hardware == a.profile), None)
    if profile is None or profile.service_time is None:
        known = [p.hardware for p in workload.spec.profiles]
        raise SimulationError(
            f"workload {workload.name!r} is placed on {a.site!r} with profile {a.profile!r}, "
            f"but its profiles are {known}"
        )
    spec = profile.service_time
    try:
        service = ServiceTime(spec.mean, spec.cv, spec.distribution)
    except ValueError as error:
        raise SimulationError(
            f"workload {workload.name!r}, profile {a.profile!r}: {error}"
        ) from None
    storage = _storage_delay(workload, site, a.pool)
    per_replica = model.scenario.spec.replica_queues == "perReplica"
    groups = a.replicas if per_replica else 1
    servers = profile.concurrency if per_replica else profile.concurrency * a.replicas
    assignment_index = len(model.assignments)
    first = len(model.queues)
    site_index = model.site_index[a.site]
    for _ in range(groups):
        model.queues.append(
            SimQueue(workload_index, assignment_index, site_index, servers, service, storage)
        )
    queues = tuple(range(first, first + groups))
    model.assignments.append(SimAssignment(workload_index, site_index, a, queues))


def _storage_delay(workload: Workload, site: Site, pool_name: str) -> float:
    """Reads per request × the read latency of the fastest acceptable medium in the pool."""
    reads = workload.spec.storage.reads
    if reads == 0:
        return 0.0
    pool = next((p for p in site.spec.node_pools if p.name == pool_name), None)
    if pool is None:
        raise SimulationError(f"site {site.name!r} has no node pool {pool_name!r}")
    wanted = workload.spec.storage.media
    media = [m for m in pool.storage if not wanted or m.media in wanted]
    if not media:
        raise SimulationError(
            f"workload {workload.name!r} reads storage ({', '.join(wanted) or 'any medium'}) "
            f"but node pool {pool_name!r} of site {site.name!r} has none"
        )
    return reads * min(m.read_latency for m in media)


class _Routing:
    """Lowest-median paths between sites, turned into link sequences on demand."""

    def __init__(self, model: SimModel) -> None:
        self.model = model
        edges = []
        self.link_between: dict[tuple[int, int], tuple[int, bool]] = {}
        # Same order as the placement engine, so parallel links resolve the same
        # way: links by name, every a→b direction before every b→a direction.
        names = sorted(range(len(model.link_names)), key=lambda i: model.link_names[i])
        links = list(model.fleet.links.values())
        ends = [
            (model.site_index[links[i].spec.a], model.site_index[links[i].spec.b]) for i in names
        ]
        for i, (a, b) in zip(names, ends, strict=True):
            edges.append((a, b, model.link_delay[i]))
        directed = [((a, b), i, True) for i, (a, b) in zip(names, ends, strict=True)]
        reverse = [((b, a), i, False) for i, (a, b) in zip(names, ends, strict=True)]
        for key, i, forward in directed + reverse:
            best = self.link_between.get(key)
            if best is None or model.link_delay[i].mu < model.link_delay[best[0]].mu:
                self.link_between[key] = (i, forward)
        self.table: PathTable | None = (
            shortest_median_paths(len(model.site_names), edges) if edges else None
        )
        self.route_of: dict[tuple[int, int], int] = {}

    def route(self, src: int, dst: int) -> int | None:
        key = (src, dst)
        if key in self.route_of:
            return self.route_of[key]
        sites = ([src] if src == dst else []) if self.table is None else self.table.path(src, dst)
        if not sites:
            return None
        hops = [self.link_between[(u, v)] for u, v in itertools.pairwise(sites)]
        links = tuple(h[0] for h in hops)
        median = sum(self.model.link_delay[i].median for i in links)
        self.model.routes.append(Route(src, dst, links, tuple(h[1] for h in hops), median))
        self.route_of[key] = len(self.model.routes) - 1
        return self.route_of[key]


def _add_streams(model: SimModel, routing: _Routing) -> None:
    fleet = model.fleet
    by_workload: dict[int, list[int]] = {}
    for i, assignment in enumerate(model.assignments):
        by_workload.setdefault(assignment.workload, []).append(i)
    for w_index, sim_workload in enumerate(model.workloads):
        workload = sim_workload.workload
        mine = by_workload.get(w_index, [])
        for demand in workload.spec.demand:
            source = fleet.data_sources.get(demand.source)
            if source is None:
                raise SimulationError(
                    f"workload {workload.name!r} is fed by unknown DataSource {demand.source!r}"
                )
            stream = _stream(model, routing, w_index, source, demand.share, mine)
            model.streams.append(stream)


def _stream(
    model: SimModel,
    routing: _Routing,
    w_index: int,
    source: DataSource,
    share: float,
    mine: list[int],
) -> Stream:
    src = model.site_index[source.spec.site]
    workload = model.workloads[w_index]
    shares = _placed_shares(model, source.name, mine)
    placed: list[Candidate] = []
    backups: list[Candidate] = []
    zone = source.spec.residency_zone or model.fleet.sites[source.spec.site].spec.residency_zone
    allowed = workload.workload.spec.residency
    for a_index in mine:
        assignment = model.assignments[a_index]
        route = routing.route(src, assignment.site)
        weight = shares.get(a_index, 0.0)
        if route is None:
            if weight > 0:
                raise SimulationError(
                    f"workload {workload.name!r}: requests from DataSource {source.name!r} "
                    f"(site {source.spec.site!r}) are placed on site "
                    f"{model.site_names[assignment.site]!r}, which no chain of Links reaches"
                )
            continue
        candidate = Candidate(a_index, weight, route, model.routes[route].median)
        if weight > 0:
            placed.append(candidate)
            continue
        site_zone = model.fleet.sites[model.site_names[assignment.site]].spec.residency_zone
        if site_zone == zone and (not allowed or site_zone in allowed):
            backups.append(candidate)
    if not placed:
        model.warnings.append(
            f"workload {workload.name!r}: the placement routes no requests from DataSource "
            f"{source.name!r}; they are counted as dropped"
        )
    total = sum(c.share for c in placed)
    if placed and abs(total - 1.0) > _SHARE_TOLERANCE:
        model.warnings.append(
            f"workload {workload.name!r}: shares of DataSource {source.name!r} add up to "
            f"{total:.3g}, not 1; they are scaled to 1"
        )
    placed = [
        Candidate(c.assignment, c.share / total, c.route, c.median)
        for c in sorted(placed, key=lambda c: (c.median, c.assignment))
    ]
    backups.sort(key=lambda c: (c.median, c.assignment))
    return Stream(w_index, source, src, share, tuple(placed + backups), len(placed))


def _placed_shares(model: SimModel, source: str, mine: list[int]) -> dict[int, float]:
    """Share of the source's requests per assignment, as the placement routes them.

    A placement that names no sources at all for a workload spreads every
    source over its assignments in proportion to their replicas.
    """
    named = {i: model.assignments[i].assignment.sources for i in mine}
    if not any(named.values()):
        replicas = {i: float(model.assignments[i].assignment.replicas) for i in mine}
        total = sum(replicas.values())
        return {i: r / total for i, r in replicas.items()}
    return {i: sources[source] for i, sources in named.items() if sources.get(source, 0.0) > 0.0}
