"""No real work: replicas exist as records, ready at once (load tests with thousands of agents)."""

from __future__ import annotations

from typing import Any

from fleetplane.agent.runtimes.base import ReplicaView, Runtime, targets
from fleetplane.model.desired_state import SiteDesiredStateSpec


class SimulatedRuntime(Runtime):
    name = "simulated"

    def __init__(self) -> None:
        self._replicas: dict[tuple[str, int], ReplicaView] = {}
        # What the last pass reconciled: with nothing running there is nothing to check
        # again, and hashing every workload's spec each tick was most of a simulated
        # agent's reconcile cost (thousands of agents per load generator).
        self._reconciled: tuple[SiteDesiredStateSpec, set[str]] | None = None

    async def reconcile(self, desired: SiteDesiredStateSpec, failed_pools: set[str]) -> None:
        if (self._reconciled is not None and self._reconciled[0] is desired
                and self._reconciled[1] == failed_pools):
            return
        self._reconciled = (desired, set(failed_pools))
        wanted = {(t.workload, t.index): t for t in targets(desired, failed_pools)}
        for key in list(self._replicas):
            if key not in wanted:
                del self._replicas[key]
        for key, target in wanted.items():
            current = self._replicas.get(key)
            if current is None or current.pool != target.pool:
                self._replicas[key] = ReplicaView(target.workload, target.index, target.pool,
                                                  "Ready", None, None, 0)

    def replicas(self) -> list[ReplicaView]:
        return list(self._replicas.values())

    async def collect_telemetry(self) -> list[dict[str, Any]]:
        workloads = sorted({view.workload for view in self._replicas.values()})
        return [{"workload": name, "requests": 0, "errors": 0} for name in workloads]

    async def close(self) -> None:
        self._replicas.clear()
        self._reconciled = None
