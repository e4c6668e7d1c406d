"""An independent checker of plans: recomputes every hard constraint from the fleet itself.

It shares no code with the engine's filters, sizing or verification: it
reads the Placement document (plus the node packing the engine reports),
redoes the compatibility and capacity arithmetic here, and computes latency
with ``fleetplane.latency``'s *reference* implementation (``EndToEnd``, a
fine-grid numerical convolution) rather than the vectorised code the engine
uses. Returns a list of violations; an empty list means the plan is sound.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

from packaging.specifiers import SpecifierSet
from packaging.version import Version

from fleetplane.latency.distributions import LogNormal, ServiceTime
from fleetplane.latency.endtoend import EndToEnd
from fleetplane.latency.network import (
    PathTable,
    loss_retransmit,
    round_trip,
    shortest_median_paths,
)
from fleetplane.latency.queueing import mgc_wait
from fleetplane.model.fleet import Fleet
from fleetplane.model.placement import Assignment
from fleetplane.model.workload import JOB_CLASSES, RuntimeRequirements
from fleetplane.placement import PlanResult


def _zone_of_source(f: Fleet, name: str) -> str:
    ds = f.data_sources[name]
    return ds.spec.residency_zone or f.sites[ds.spec.site].spec.residency_zone


def _image_ok(
    f: Fleet, image_name: str, arch: str, runtime: RuntimeRequirements, model: str | None
) -> bool:
    image = f.node_images[image_name].spec
    req = runtime
    if req.arches and arch not in req.arches:
        return False
    if arch not in image.arches:
        return False
    if req.container_runtime:
        name = req.container_runtime
        for op in (">=", "<=", "==", "~=", "!=", ">", "<"):
            if op in name:
                name, spec = name.split(op, 1)[0], op + name.split(op, 1)[1]
                if Version(image.container_runtime.version) not in SpecifierSet(spec):
                    return False
                break
        if image.container_runtime.name != name.strip():
            return False
    for driver, spec in req.drivers.items():
        if driver not in image.drivers or Version(image.drivers[driver]) not in SpecifierSet(spec):
            return False
    return model is None or model in image.accelerators


def check(f: Fleet, result: PlanResult) -> list[str]:
    problems: list[str] = []
    spec = result.placement.spec
    placed = {w.workload: w for w in spec.workloads}
    missing = {u.workload for u in spec.unplaceable}
    if set(placed) & missing or set(placed) | missing != set(f.workloads):
        problems.append("workloads placed/unplaceable do not partition the fleet's workloads")

    names = sorted(f.sites)
    idx = {n: i for i, n in enumerate(names)}
    edges = []
    link_loss: dict[tuple[int, int], float] = {}
    for link in f.links.values():
        end_a, end_b = idx[link.spec.a], idx[link.spec.b]
        median = LogNormal.from_p50_p99(link.spec.latency.p50, link.spec.latency.p99)
        edges.append((end_a, end_b, median))
        link_loss[(end_a, end_b)] = link_loss[(end_b, end_a)] = link.spec.loss
    paths = shortest_median_paths(len(names), edges) if edges else None

    pool_use: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    site_power: dict[str, float] = defaultdict(float)
    for name, item in placed.items():
        w = f.workloads[name].spec
        is_job = w.class_ in JOB_CLASSES
        profiles = {p.hardware: p for p in w.profiles}
        domains_per_source: dict[str, set[str]] = defaultdict(set)
        routed: dict[str, float] = defaultdict(float)
        for a in item.assignments:
            site = f.sites[a.site]
            pool = next(p for p in site.spec.node_pools if p.name == a.pool)
            prof = profiles[a.profile]
            where = f"{name} at {a.site}/{a.pool}"
            if site.spec.cordoned or site.spec.draining:
                problems.append(f"{where}: site is cordoned or draining")
            if w.residency and site.spec.residency_zone not in w.residency:
                problems.append(f"{where}: outside residency {w.residency}")
            model = None if prof.hardware.startswith("cpu") else prof.hardware
            acc_count = 0
            acc = None
            if model is None:
                if w.resources.accelerator is not None:
                    problems.append(f"{where}: CPU profile for an accelerator workload")
                arch = prof.hardware.partition("/")[2]
                if arch and pool.arch != arch:
                    problems.append(f"{where}: wrong arch")
            else:
                acc = next((x for x in pool.accelerators if x.model == model), None)
                req = w.resources.accelerator
                acc_count = req.count if req is not None else 1
                if acc is None:
                    problems.append(f"{where}: pool has no {model}")
                elif req is not None and (
                    acc.kind != req.kind
                    or acc.memory < req.memory
                    or acc.count < req.count
                    or (req.models and model not in req.models)
                ):
                    problems.append(f"{where}: accelerator does not match the request")
            if not _image_ok(f, pool.node_image, pool.arch, w.runtime, model):
                problems.append(f"{where}: node image incompatible")
            if w.resources.cpu > pool.cpu or w.resources.memory > pool.memory:
                problems.append(f"{where}: one replica does not fit a node")
            if (
                is_job
                and prof.runtime is not None
                and w.slo.deadline is not None
                and prof.runtime > w.slo.deadline
            ):
                problems.append(f"{where}: misses the deadline")
            use = pool_use[(a.site, a.pool)]
            use[0] += a.replicas * w.resources.cpu
            use[1] += a.replicas * w.resources.memory
            use[2] += a.replicas * acc_count
            share = max(w.resources.cpu / pool.cpu, w.resources.memory / pool.memory)
            if acc is not None:
                share = max(share, acc_count / acc.count)
            watts = (
                min(share, 1.0) * pool.watts + acc_count * (acc.watts if acc else 0.0) + prof.power
            )
            site_power[a.site] += a.replicas * watts
            for src, fraction in a.sources.items():
                routed[src] += fraction
                if _zone_of_source(f, src) != site.spec.residency_zone:
                    problems.append(f"{where}: data of {src} leaves its zone")
                domains_per_source[src].add(a.site)
            if not is_job and not w.replicas.min <= a.replicas <= w.replicas.max:
                problems.append(f"{where}: replicas outside bounds")
            if not is_job and w.slo.latency is not None:
                problems += _latency(f, name, a, names, idx, paths, link_loss)
        for demand in w.demand:
            if abs(routed[demand.source] - 1.0) > 1e-6:
                problems.append(f"{name}: {routed[demand.source]} of {demand.source} routed")
            if (w.slo.availability or 0) >= 0.999 and len(domains_per_source[demand.source]) < 2:
                problems.append(f"{name}: {demand.source} served in fewer than two sites")
        if (
            is_job
            and sum(a.replicas for a in item.assignments) != w.replicas.min
            and (w.slo.availability or 0) < 0.999
        ):
            problems.append(f"{name}: wrong number of tasks")

    for (site_name, pool_name), (cpu, memory, accs) in pool_use.items():
        pool = next(p for p in f.sites[site_name].spec.node_pools if p.name == pool_name)
        total_acc = sum(x.count for x in pool.accelerators)
        if (
            cpu > pool.count * pool.cpu + 1e-6
            or memory > pool.count * pool.memory
            or accs > pool.count * total_acc
        ):
            problems.append(f"{site_name}/{pool_name}: more allocated than the pool has")
    for site_name, watts in site_power.items():
        budget = f.sites[site_name].spec.power_budget
        if budget is not None and watts > budget + 1e-6:
            problems.append(f"{site_name}: draws {watts} W over its {budget} W budget")
    problems += _nodes(f, result)
    return problems


def _nodes(f: Fleet, result: PlanResult) -> list[str]:
    """Per-node totals of the engine's packing must fit each node.

    Allocations are listed in the same order as the document's assignments,
    which name the pool.
    """
    used: dict[tuple[str, str, int], list[float]] = defaultdict(lambda: [0.0, 0.0])
    problems = []
    for item in result.placement.spec.workloads:
        w = f.workloads[item.workload].spec
        allocs = result.allocations[item.workload]
        for a, alloc in zip(item.assignments, allocs, strict=True):
            if sum(n for _, n in alloc.nodes) != a.replicas:
                problems.append(f"{item.workload}: packing does not add up to its replicas")
            for node, count in alloc.nodes:
                key = (a.site, a.pool, node)
                used[key][0] += count * w.resources.cpu
                used[key][1] += count * w.resources.memory
    for (site_name, pool_name, node), (cpu, memory) in used.items():
        pool = next(p for p in f.sites[site_name].spec.node_pools if p.name == pool_name)
        if not 0 <= node < pool.count or cpu > pool.cpu + 1e-6 or memory > pool.memory:
            problems.append(f"node {node} of {site_name}/{pool_name} is over its capacity")
    return problems


def _latency(
    f: Fleet,
    name: str,
    a: Assignment,
    names: list[str],
    idx: dict[str, int],
    paths: PathTable | None,
    link_loss: dict[tuple[int, int], float],
) -> list[str]:
    w = f.workloads[name].spec
    prof = next(p for p in w.profiles if p.hardware == a.profile)
    assert prof.service_time is not None and w.slo.latency is not None
    service = ServiceTime(prof.service_time.mean, prof.service_time.cv)
    pool = next(p for p in f.sites[a.site].spec.node_pools if p.name == a.pool)
    reads = w.storage.reads
    media = [
        m.read_latency for m in pool.storage if not w.storage.media or m.media in w.storage.media
    ]
    storage = reads * min(media) if reads else 0.0
    rates = {d.source: f.data_sources[d.source].spec.request_rate * d.share for d in w.demand}
    factor = max(1.0, (w.slo.throughput or 0.0) / sum(rates.values())) if rates else 1.0
    # Design load: every source this assignment serves, in full (failover included).
    load = sum(rates[s] for s in a.sources) * factor
    wait = mgc_wait(load, service, a.replicas * prof.concurrency)
    problems = []
    dst = idx[a.site]
    for src in a.sources:
        s = idx[f.data_sources[src].spec.site]
        rtt = None
        loss = None
        if s != dst:
            # A plan routes between distinct sites only over links (the fleet has some).
            assert paths is not None
            one_way = paths.one_way(s, dst)
            rtt = round_trip(one_way)
            hops = paths.path(s, dst)
            keep = math.prod(1 - link_loss[(u, v)] for u, v in itertools.pairwise(hops))
            p = 1 - keep**2
            loss = loss_retransmit(rtt, p) if p > 0 else None
        e2e = EndToEnd(service, rtt, storage, None if math.isinf(wait.theta) else wait, loss)
        for q, target in w.slo.latency.targets():
            value = e2e.quantile(q) if not math.isinf(wait.theta) else math.inf
            if value > target * 1.002:
                problems.append(f"{name} at {a.site}: q{q} from {src} is {value:.4f}s > {target}s")
    return problems


def without_timing(document: dict[str, object]) -> dict[str, object]:
    """A Placement document minus how long the solver took (the only non-deterministic field)."""
    spec = dict(document["spec"])  # type: ignore[call-overload]
    solver = dict(spec["solver"])
    solver.pop("timeSeconds", None)
    spec["solver"] = solver
    return {**document, "spec": spec}
