"""The server no longer keeps the revisions an agent missed: it jumps to the latest (410)."""

from __future__ import annotations

from pathlib import Path

from harness import AgentPort, AgentProcess, stop_workloads, tiny, wait_for

from fleetplane.control.controllers.transactions import write_site_states


def test_agent_takes_the_latest_revision_when_its_next_one_is_gone(
    agent_port: AgentPort, tmp_path: Path
) -> None:
    agent = AgentProcess(agent_port, "store-1", tmp_path / "agent",
                         agent_port.bootstrap_token("store-1"))
    try:
        agent.start()
        agent_port.desire("store-1", [tiny("svc")])
        wait_for(lambda: agent.get("/healthz")["appliedRevision"] == 1, 30, "revision 1")
        agent.stop()
        # Offline through five revisions; the server keeps only the last two (5 and 6).
        for replicas in range(2, 7):
            write_site_states(agent_port.plane.store,
                              {"store-1": {"workloads": [tiny("svc", replicas=replicas % 3)]}},
                              actor="test", keep=2)
        agent.token = None
        agent.start()
        wait_for(lambda: agent.get("/healthz")["appliedRevision"] == 6, 30, "revision 6")
        assert agent.get("/v1/revisions") == [6], "2..4 are gone: jump, do not replay 5 alone"
        assert "no longer kept by the server" in agent.log()
        wait_for(lambda: len([r for r in agent.replicas() if r["state"] == "Ready"]) == 0
                 and agent.get("/healthz")["connected"], 30, "revision 6 (0 replicas) in force")
        # Afterwards it follows revisions one by one again.
        agent_port.desire("store-1", [tiny("svc", replicas=1)])
        wait_for(lambda: agent.get("/v1/revisions") == [6, 7], 30, "revision 7")
    finally:
        agent.stop()
        stop_workloads(tmp_path / "agent")
