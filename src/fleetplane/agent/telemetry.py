"""Per-interval workload telemetry: buffered on disk, uploaded in order, exactly once.

Each interval gets the next sequence number of this agent when it is
written to the local buffer (SQLite, bounded: beyond ``limit`` the oldest
are dropped and counted). Upload sends the oldest pending ones; the server
stores them idempotently by (site, agent, sequence) and answers the highest
sequence it holds, and only then are they deleted here — so a lost answer
means a resend the server ignores, never a gap or a duplicate.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from fleetplane.agent.state import LocalState

BATCH = 500


class TelemetryUploadError(Exception):
    """The server did not accept the batch; it stays buffered."""


class TelemetryBuffer:
    def __init__(self, state: LocalState, site: str, agent_id: str, limit: int) -> None:
        self.state = state
        self.site = site
        self.agent_id = agent_id
        self.limit = limit
        self.dropped = 0
        self._interval_start = datetime.now(UTC)

    def record(self, workloads: list[dict[str, Any]]) -> None:
        end = datetime.now(UTC)
        bodies = [{**item, "intervalStart": self._interval_start.isoformat(),
                   "intervalEnd": end.isoformat()} for item in workloads]
        self._interval_start = end
        if bodies:
            self.dropped += self.state.buffer_telemetry(bodies, self.limit)

    async def upload(self, client: httpx.AsyncClient, server: str) -> int:
        sent = 0
        while True:
            pending = self.state.pending_telemetry(BATCH)
            if not pending:
                return sent
            answer = await client.post(
                f"{server}/agent/v1/telemetry",
                json={"agentId": self.agent_id, "intervals": pending},
            )
            if answer.status_code != 200:
                raise TelemetryUploadError(
                    f"telemetry upload answered {answer.status_code}: {answer.text}")
            self.state.acknowledge_telemetry(int(answer.json()["through"]))
            sent += len(pending)
