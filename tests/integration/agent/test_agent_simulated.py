"""The simulated runtime: many real agents in one process, no workload processes.

Each agent enrols, watches, applies, reports status and uploads telemetry
over real mTLS like any other; only the replicas are records, ready at once.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from harness import AgentPort, tiny

from fleetplane.agent.agent import Agent, AgentConfig
from fleetplane.control.agent_api.telemetry import stored_intervals

SITES = [f"store-{n}" for n in range(1, 6)]


async def _until(probe: Any, timeout: float, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while not (value := probe()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)  # polling a condition
    return value


def _views(agent: Agent) -> list[tuple[str, int, str, str]]:
    return sorted((v.workload, v.index, v.pool, v.state) for v in agent.runtime.replicas())


def test_simulated_agents_sync_fail_over_and_report(agent_port: AgentPort, tmp_path: Path
                                                    ) -> None:
    for site in SITES[1:]:
        agent_port.add_site(site)
    agents = [Agent(AgentConfig(
        server=agent_port.url, site=site, data_dir=tmp_path / site,
        ca_pem=agent_port.ca_file.read_bytes(), bootstrap_token=agent_port.bootstrap_token(site),
        agent_id="sim", runtime="simulated", health_port=None, heartbeat_interval=0.2,
        telemetry_interval=0.2)) for site in SITES]
    for site in SITES:
        agent_port.desire(site, [tiny("svc", replicas=3), tiny("other", replicas=1)])

    async def scenario() -> None:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(agent.run(stop)) for agent in agents]
        try:
            for agent in agents:
                await _until(lambda a=agent: len(_views(a)) == 4, 30, f"{agent.config.site}")
                assert _views(agent) == [("other", 0, "cpu", "Ready"), ("svc", 0, "cpu", "Ready"),
                                         ("svc", 1, "cpu", "Ready"), ("svc", 2, "cpu", "Ready")]

            def reported(site: str) -> bool:
                status = agent_port.site_status(site)
                ready = {w["workload"]: w["ready"] for w in status.get("workloads", [])}
                return status.get("appliedRevision") == 1 and ready == {"svc": 3, "other": 1}

            for site in SITES:
                await _until(lambda s=site: reported(s), 30, f"status of {site}")
            # One site loses its cpu pool: only its replicas move, to the failover pool.
            first = agents[0]
            first.state.set_pool_failed("cpu", True)
            first._wake_reconcile_soon()
            await _until(lambda: {v.pool for v in first.runtime.replicas()} == {"spare"}, 30,
                         "failover of the simulated replicas")
            assert {v.pool for v in agents[1].runtime.replicas()} == {"cpu"}
            # A new revision shrinks every site.
            for site in SITES:
                agent_port.desire(site, [tiny("svc", replicas=1)])
            for agent in agents:
                await _until(lambda a=agent: len(_views(a)) == 1, 30, "revision 2")
            for site in SITES:
                await _until(lambda s=site: [r for r in stored_intervals(
                    agent_port.plane.engine, s) if r["workload"] == "svc"], 30,
                    f"telemetry of {site}")
        finally:
            stop.set()
            await asyncio.gather(*tasks)

    asyncio.run(scenario())
    assert all(agent.sync.revision == 2 for agent in agents)
