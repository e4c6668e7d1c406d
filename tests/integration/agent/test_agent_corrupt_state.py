"""A corrupt local state file: the agent moves it aside, says so, and follows the server."""

from __future__ import annotations

from pathlib import Path

from harness import AgentPort, AgentProcess, inference, stop_workloads, wait_for


def test_corrupt_state_file_starts_from_the_servers_desired_state(
    agent_port: AgentPort, tmp_path: Path
) -> None:
    data_dir = tmp_path / "agent"
    data_dir.mkdir()
    (data_dir / "state.db").write_bytes(b"this is not a SQLite database" * 100)
    agent_port.desire("store-1", [inference("digits", replicas=0)])
    agent = AgentProcess(agent_port, "store-1", data_dir, agent_port.bootstrap_token("store-1"))
    try:
        agent.start()
        wait_for(lambda: agent.get("/healthz")["appliedRevision"] == 1, 30, "revision 1")
        assert "unreadable" in agent.log() and "starting from the control plane" in agent.log()
        assert list(data_dir.glob("state.db.corrupt-*"))
    finally:
        agent.stop()
        stop_workloads(data_dir)
