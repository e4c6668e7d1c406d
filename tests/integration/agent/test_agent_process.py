"""A real agent process running real workload processes against a real agent port.

One scenario, in the order an operator would live it: enrol, a desired state
arrives and the workload serves; the agent is killed with SIGKILL and its
successor re-adopts the running replica (same pid); the control plane goes
away, the workload keeps serving, a killed replica comes back; two revisions
are written while the agent is cut off; when the server returns the agent
applies them in order without restarting the healthy replica, and every
telemetry interval it buffered arrives exactly once.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import AgentPort, AgentProcess, inference, predict, stop_workloads, wait_for

from fleetplane.control.agent_api.telemetry import stored_intervals


@pytest.fixture
def agent(agent_port: AgentPort, tmp_path: Path) -> Iterator[AgentProcess]:
    process = AgentProcess(agent_port, "store-1", tmp_path / "agent",
                           agent_port.bootstrap_token("store-1"))
    yield process
    process.stop()
    stop_workloads(tmp_path / "agent")


def _ready(agent: AgentProcess, workload: str, count: int = 1) -> list[dict[str, Any]]:
    ready = [r for r in agent.replicas() if r["workload"] == workload and r["state"] == "Ready"]
    return ready if len(ready) >= count else []


def test_agent_runs_readopts_and_carries_on_without_the_server(
    agent_port: AgentPort, agent: AgentProcess, model_file: Path
) -> None:
    agent.start()
    agent_port.desire("store-1", [inference("digits", model=model_file)])
    (replica,) = wait_for(lambda: _ready(agent, "digits"), 60, "digits replica ready")
    assert predict(replica["port"]) == 200

    def reported() -> dict[str, Any]:
        status = agent_port.site_status("store-1")
        workloads = status.get("workloads") or [{}]
        return status if workloads[0].get("ready") == 1 else {}

    status = wait_for(reported, 20, "status with the ready replica")
    assert status["appliedRevision"] == 1 and status["agentVersion"] == "0.1.0"
    assert status["hardware"]["cpu"] == os.cpu_count() and status["hardware"]["arch"]

    # kill -9: the successor re-adopts the replica instead of starting another.
    agent.kill9()
    assert predict(replica["port"]) == 200
    agent.token = None
    agent.start()
    (adopted,) = wait_for(lambda: _ready(agent, "digits"), 30, "re-adopted replica")
    assert adopted["pid"] == replica["pid"]
    assert "re-adopted digits/0" in agent.log()

    # The control plane goes away: the replica serves, a killed replica restarts.
    agent_port.stop()
    wait_for(lambda: agent.get("/healthz")["connected"] is False, 30, "agent sees the outage")
    assert predict(replica["port"]) == 200
    os.killpg(replica["pid"], signal.SIGKILL)
    restarted = wait_for(lambda: [r for r in _ready(agent, "digits")
                                  if r["pid"] != replica["pid"]], 60, "restarted replica")
    assert predict(restarted[0]["port"]) == 200
    # Two revisions while cut off: a second workload, then two replicas of it.
    agent_port.desire("store-1", [inference("digits", model=model_file),
                                  inference("extra", model=model_file)])
    agent_port.desire("store-1", [inference("digits", model=model_file),
                                  inference("extra", replicas=2, model=model_file)])
    serving = restarted[0]["pid"]
    agent_port.start()
    wait_for(lambda: agent.get("/v1/revisions") and agent.get("/v1/revisions")[-1] == 3, 60,
             "revision 3 applied")
    assert agent.get("/v1/revisions") == [2, 3]
    wait_for(lambda: _ready(agent, "extra", 2), 60, "two extra replicas")
    (digits,) = _ready(agent, "digits")
    assert digits["pid"] == serving, "returning from a partition never restarts healthy replicas"

    # Telemetry buffered during the outage arrives once, in order, without gaps.
    def uploaded() -> list[dict[str, Any]]:
        backlog = agent.get("/metrics")
        rows = stored_intervals(agent_port.plane.engine, "store-1")
        return rows if rows and "fleetplane_agent_telemetry_backlog 0.0" in backlog else []

    rows = wait_for(uploaded, 30, "telemetry upload")
    sequences = [row["sequence"] for row in rows]
    assert sequences == list(range(1, len(sequences) + 1))
    assert sum(row["requests"] for row in rows if row["workload"] == "digits") >= 1
