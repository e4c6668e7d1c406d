"""No real work: replicas exist as records, ready at once (load tests with thousands of agents)."""

from __future__ import annotations

from typing import Any

from fleetplane.agent.runtimes.base import ReplicaView, Runtime, targets
from fleetplane.model.desired_state import SiteDesiredStateSpec


class SimulatedRuntime(Runtime):
    name = "simulated"

    def __init__(self) -> None:
        self._replicas: dict[tuple[str, int], ReplicaView] = {}

    async def reconcile(self, desired: SiteDesiredStateSpec, failed_pools: set[str]) -> None:
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
