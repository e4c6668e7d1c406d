"""Local decisions of a real agent process with the control plane gone.

Node-pool failover (an operator's mark, and a pool health check failing),
the liveness kill of a hung replica, and a replica over its memory limit
being killed and reported. The server is stopped before each local event,
so nothing here can come from it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import AgentPort, AgentProcess, stop_workloads, tiny, wait_for

from fleetplane.agent.runtimes.limits import MemoryCgroups


@pytest.fixture
def pool_flag(tmp_path: Path) -> Path:
    return tmp_path / "cpu-pool-down"


@pytest.fixture
def agent(agent_port: AgentPort, tmp_path: Path, pool_flag: Path) -> Iterator[AgentProcess]:
    process = AgentProcess(
        agent_port, "store-1", tmp_path / "agent", agent_port.bootstrap_token("store-1"),
        extra=["--pool-check", f"cpu=test ! -e {pool_flag}", "--pool-check-interval", "0.2"])
    yield process
    process.stop()
    stop_workloads(tmp_path / "agent")


def _ready(agent: AgentProcess, workload: str, pool: str, count: int) -> list[dict[str, Any]]:
    ready = [r for r in agent.replicas()
             if r["workload"] == workload and r["state"] == "Ready" and r["pool"] == pool]
    return ready if len(ready) == count else []


def _cut_off(agent_port: AgentPort, agent: AgentProcess) -> None:
    agent_port.stop()
    wait_for(lambda: agent.get("/healthz")["connected"] is False, 30, "agent sees the outage")


def test_replicas_move_to_the_failover_pool_without_the_server(
    agent_port: AgentPort, agent: AgentProcess, pool_flag: Path
) -> None:
    agent.start()
    agent_port.desire("store-1", [tiny("svc", replicas=2)])
    on_cpu = wait_for(lambda: _ready(agent, "svc", "cpu", 2), 60, "two replicas on cpu")
    _cut_off(agent_port, agent)

    # The pool's health check fails: both replicas move to the failover pool.
    pool_flag.touch()
    on_spare = wait_for(lambda: _ready(agent, "svc", "spare", 2), 60, "replicas on spare")
    assert {r["pid"] for r in on_spare}.isdisjoint(r["pid"] for r in on_cpu)
    assert agent.get("/healthz")["failedPools"] == ["cpu"]
    assert "node pool cpu failed its health check" in agent.log()
    # It passes again: they come back.
    pool_flag.unlink()
    wait_for(lambda: _ready(agent, "svc", "cpu", 2), 60, "replicas back on cpu")
    assert agent.get("/healthz")["failedPools"] == []

    # An operator marks the pool failed on the agent itself (kept across restarts).
    assert agent.post("/v1/pools/cpu/fail") == {"pool": "cpu", "failed": True}
    wait_for(lambda: _ready(agent, "svc", "spare", 2), 60, "replicas on spare after the mark")
    agent.stop()
    agent.token = None
    agent.start()
    assert agent.get("/healthz")["failedPools"] == ["cpu"]
    assert _ready(agent, "svc", "spare", 2) or wait_for(
        lambda: _ready(agent, "svc", "spare", 2), 30, "re-adopted on spare")
    assert agent.post("/v1/pools/cpu/recover") == {"pool": "cpu", "failed": False}
    wait_for(lambda: _ready(agent, "svc", "cpu", 2), 60, "replicas back on cpu after recover")
    assert agent.get("/healthz")["connected"] is False, "all of this happened offline"


def test_a_hung_replica_fails_liveness_and_is_restarted(
    agent_port: AgentPort, agent: AgentProcess
) -> None:
    agent.start()
    agent_port.desire("store-1", [tiny("svc")])
    (replica,) = wait_for(lambda: _ready(agent, "svc", "cpu", 1), 60, "replica ready")
    _cut_off(agent_port, agent)
    # SIGSTOP: the process exists but answers nothing, like a deadlocked server.
    os.kill(replica["pid"], signal.SIGSTOP)
    (restarted,) = wait_for(
        lambda: [r for r in _ready(agent, "svc", "cpu", 1) if r["pid"] != replica["pid"]],
        60, "a new replica after the liveness kill")
    assert restarted["restarts"] == 1
    assert restarted["reason"] == "hung: killed after failing its liveness checks"
    assert "liveness checks in a row; killing it" in agent.log()
    stat = Path(f"/proc/{replica['pid']}/stat")
    assert not stat.exists() or stat.read_text().split(") ")[1][0] == "Z", "hung replica killed"


def test_a_replica_over_its_memory_limit_is_killed_and_reported(
    agent_port: AgentPort, agent: AgentProcess
) -> None:
    agent.start()
    agent_port.desire("store-1", [tiny("small", memory="256Mi"),
                                  tiny("hog", memory="64Mi", TINY_HOG_MB="200")])
    wait_for(lambda: _ready(agent, "small", "cpu", 1), 60, "the well-behaved replica")

    def hog_reported() -> dict[str, Any]:
        status = agent_port.site_status("store-1")
        found = [w for w in status.get("workloads", []) if w["workload"] == "hog"]
        return found[0] if found and found[0].get("message") else {}

    hog = wait_for(hog_reported, 60, "the hog's end in the site status")
    assert hog["ready"] == 0 and hog["state"] == "Pending"
    if MemoryCgroups.find() is not None:
        assert "OOMKilled" in hog["message"], hog
    else:  # no writable memory cgroup: RLIMIT_DATA makes the allocation fail instead
        assert "exited with code 1" in hog["message"], hog
    (replica,) = [r for r in agent.replicas() if r["workload"] == "hog"]
    assert replica["restarts"] >= 1
    assert _ready(agent, "small", "cpu", 1), "the other workload is untouched"
