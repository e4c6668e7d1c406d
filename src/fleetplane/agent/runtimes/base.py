"""The one interface every runtime implements, and what they share: targets and hashing."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from fleetplane.model.desired_state import DesiredWorkload, SiteDesiredStateSpec
from fleetplane.model.infrastructure import WorkloadState


@dataclass(frozen=True)
class Target:
    """One replica the desired state asks for, on the pool it should run on now."""

    workload: str
    index: int
    pool: str
    spec_hash: str
    desired: DesiredWorkload


@dataclass(frozen=True)
class ReplicaView:
    workload: str
    index: int
    pool: str
    state: str
    pid: int | None
    port: int | None
    restarts: int
    # Why the replica last ended (OOMKilled, a signal, an exit code, failed liveness).
    reason: str | None = field(default=None, kw_only=True)


def effective_pool(item: DesiredWorkload, failed: set[str]) -> str | None:
    """The workload's pool, or the first failover pool the desired state allows that is healthy."""
    for pool in (item.pool, *item.failover.pools):
        if pool not in failed:
            return pool
    return None


def spec_hash(item: DesiredWorkload, pool: str) -> str:
    """What a replica's process depends on; the replica count is not part of it.

    Optional fields left at None are omitted, so a new optional field in the model
    (``batch`` was one) leaves every existing hash alone: an upgraded agent restarts no
    replica just because the model grew.
    """
    shape = item.model_dump(mode="json", by_alias=True, exclude_none=True,
                            exclude={"replicas", "failover", "sources"})
    shape["pool"] = pool
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]


def targets(desired: SiteDesiredStateSpec, failed: set[str]) -> list[Target]:
    found: list[Target] = []
    for item in desired.workloads:
        pool = effective_pool(item, failed)
        if pool is None:
            continue
        digest = spec_hash(item, pool)
        found.extend(Target(item.workload, i, pool, digest, item) for i in range(item.replicas))
    return found


class Runtime(ABC):
    """Runs the replicas a desired state asks for, level-triggered.

    :meth:`reconcile` is called every tick with the last-known-good desired
    state; it must be idempotent (calling it again with the same input
    changes nothing) and must never stop a workload because the control
    plane is unreachable — it only sees desired state, not connectivity.
    """

    name: str

    @abstractmethod
    async def reconcile(self, desired: SiteDesiredStateSpec, failed_pools: set[str]) -> None:
        """Start, restart and stop replicas to match ``desired``."""

    @abstractmethod
    def replicas(self) -> list[ReplicaView]:
        """Every replica the runtime knows, for status and the agent's own API."""

    @abstractmethod
    async def collect_telemetry(self) -> list[dict[str, Any]]:
        """Per-workload counters since the previous call (one interval)."""

    @abstractmethod
    async def close(self) -> None:
        """Release the runtime's own resources; workloads keep running."""

    def workload_states(self, desired: SiteDesiredStateSpec | None) -> list[WorkloadState]:
        if desired is None:
            return []
        views = self.replicas()
        states = []
        for item in desired.workloads:
            own = [v for v in views if v.workload == item.workload]
            ready = sum(v.state == "Ready" for v in own)
            state = "Running" if ready >= item.replicas else ("Degraded" if ready else "Pending")
            reasons = [f"replica {v.index}: {v.reason}" for v in own if v.reason]
            states.append(WorkloadState(workload=item.workload, replicas=item.replicas,
                                        ready=ready, state=state,
                                        message="; ".join(reasons) or None))
        return states
