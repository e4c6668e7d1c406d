"""What each site must run, derived from a Placement and the fleet (pure; no store)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fleetplane.model.desired_state import ArtifactRef, BatchJob, DesiredWorkload, LocalFailover
from fleetplane.model.fleet import Fleet
from fleetplane.model.placement import Placement
from fleetplane.model.units import format_duration
from fleetplane.model.workload import JOB_CLASSES, Workload

log = logging.getLogger(__name__)

# (artifact name, version) → (sha256 digest, size in bytes) of every pushed artifact.
ArtifactIndex = Mapping[tuple[str, str], tuple[str, int]]


def site_workloads(
    placement: Placement, fleet: Fleet, artifacts: ArtifactIndex | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Per site, the JSON form of its ``DesiredWorkload`` list (sorted: equal plans compare equal).

    Equal entries of several sites are one shared dict: callers must not modify them.

    Every site of the fleet gets an entry, empty when nothing runs there:
    an agent must learn that its last workload was moved away. A workload
    whose ``artifact`` was not pushed yet goes to no site: it cannot run.
    """
    by_site: dict[str, list[dict[str, Any]]] = {name: [] for name in fleet.sites}
    for placed in placement.spec.workloads:
        workload = fleet.workloads.get(placed.workload)
        if workload is None:
            continue
        refs = _artifact_refs(workload, artifacts or {})
        if refs is None:
            continue
        per_site: dict[str, int] = {}
        # Sites given the same assignment get equal entries: each is built (validated
        # and dumped) once per workload and shared, not once per site.
        built: dict[tuple[Any, ...], dict[str, Any]] = {}
        for assignment in placed.assignments:
            if assignment.site not in by_site:
                continue
            per_site[assignment.site] = per_site.get(assignment.site, 0) + 1
            # A workload split over two pools of one site gets one entry per pool.
            entry_name = placed.workload if per_site[assignment.site] == 1 else (
                f"{placed.workload}@{assignment.pool}"
            )
            failover = _failover_pools(fleet, workload, assignment.site, assignment.pool)
            key = (entry_name, assignment.pool, assignment.profile, assignment.replicas,
                   tuple(sorted(assignment.sources.items())), failover)
            item = built.get(key)
            if item is None:
                item = built[key] = DesiredWorkload(
                    workload=entry_name,
                    workload_class=workload.spec.class_,
                    pool=assignment.pool,
                    profile=assignment.profile,
                    replicas=assignment.replicas,
                    resources=workload.spec.resources,
                    runtime=workload.spec.runtime,
                    artifacts=refs,
                    sources=dict(assignment.sources),
                    secrets=list(workload.spec.secrets),
                    env=dict(workload.spec.env),
                    failover=LocalFailover(pools=list(failover), min_replicas=0),
                    batch=_batch(workload),
                ).model_dump(mode="json", by_alias=True, exclude_none=True)
            by_site[assignment.site].append(item)
    for items in by_site.values():
        items.sort(key=lambda item: (item["workload"], item["pool"]))
    return by_site


def _artifact_refs(workload: Workload, artifacts: ArtifactIndex) -> list[ArtifactRef] | None:
    """The workload's artifact resolved to its digest; None when it names one not pushed."""
    wanted = workload.spec.artifact
    if wanted is None:
        return []
    found = artifacts.get((wanted.name, wanted.version))
    if found is None:
        log.warning("workload %s names artifact %s:%s, which was not pushed; it runs nowhere "
                    "until `fleetplane artifact push` records it", workload.metadata.name,
                    wanted.name, wanted.version)
        return None
    return [ArtifactRef(name=wanted.name, digest=found[0], size=found[1])]


def missing_artifacts(fleet: Fleet, artifacts: ArtifactIndex) -> list[dict[str, str]]:
    """Workloads naming an artifact not pushed yet, each with what to do (Placement status)."""
    missing = []
    for name, workload in sorted(fleet.workloads.items()):
        wanted = workload.spec.artifact
        if wanted is None or (wanted.name, wanted.version) in artifacts:
            continue
        missing.append({
            "workload": name,
            "artifact": f"{wanted.name}:{wanted.version}",
            "message": (
                f"workload {name} names artifact {wanted.name}:{wanted.version}, which was "
                "never pushed, so no site runs it; push it with `fleetplane artifact push DIR "
                f"--name {wanted.name} --version {wanted.version}` and it is delivered"
            ),
        })
    return missing


def artifacts_condition(missing: list[dict[str, str]]) -> dict[str, str]:
    """The Placement's ``ArtifactsResolved`` condition for :func:`missing_artifacts`."""
    if not missing:
        return {"type": "ArtifactsResolved", "status": "True", "reason": "AllPushed",
                "message": "every workload's artifact is pushed"}
    named = ", ".join(f"{m['workload']} ({m['artifact']})" for m in missing)
    return {"type": "ArtifactsResolved", "status": "False", "reason": "ArtifactMissing",
            "message": f"artifacts not pushed yet, these workloads run nowhere: {named}; "
                       "push them with `fleetplane artifact push`"}


def _batch(workload: Workload) -> BatchJob | None:
    """What a batch scheduler needs of a batch/training workload: its deadline as the time limit."""
    if workload.spec.class_ not in JOB_CLASSES:
        return None
    deadline = workload.spec.slo.deadline
    return BatchJob.model_validate(
        {"timeLimit": format_duration(deadline) if deadline is not None else None})


def _failover_pools(fleet: Fleet, workload: Workload, site: str, pool: str) -> tuple[str, ...]:
    """Other pools of the site with the accelerator kind it needs: where the agent may fail over."""
    found = fleet.sites.get(site)
    if found is None:
        return ()
    request = workload.spec.resources.accelerator
    wanted = {request.kind} if request is not None else set()
    pools = []
    for candidate in found.spec.node_pools:
        if candidate.name == pool:
            continue
        kinds = {accelerator.kind for accelerator in candidate.accelerators}
        if wanted <= kinds:
            pools.append(candidate.name)
    return tuple(pools)


def referenced_secrets(workloads: list[dict[str, Any]]) -> frozenset[str]:
    """Names of the Secrets one site's desired workloads deliver."""
    return frozenset(name for item in workloads for name in item.get("secrets", []))


def referenced_artifacts(workloads: list[dict[str, Any]]) -> frozenset[str]:
    """Digests of the artifacts one site's desired workloads run."""
    return frozenset(
        ref["digest"] for item in workloads for ref in item.get("artifacts", [])
    )
