"""The agent reports its version; the server serves agents one minor version behind, no older.

The server's release is set to 0.3.0 in this process (the agent port runs
here), which is how a control plane upgraded ahead of its agents looks.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from harness import AgentPort, AgentProcess, stop_workloads, wait_for

from fleetplane import __version__
from fleetplane.agent.enrolment import Enroller, EnrolmentError, Identity
from fleetplane.control.agent_api import heartbeat

STATUS = "/apis/fleetplane/v1/sites/store-1/status"


def _enrolled(port: AgentPort, data_dir: Path) -> Identity:
    identity = Identity(data_dir, "store-1", "a1", port.ca_file.read_bytes())
    asyncio.run(Enroller(port.url, identity, port.bootstrap_token("store-1")).ensure())
    return identity


def test_server_accepts_one_minor_behind_and_refuses_older(
    agent_port: AgentPort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = _enrolled(agent_port, tmp_path / "a1")
    monkeypatch.setattr(heartbeat, "__version__", "0.3.0")
    with httpx.Client(verify=identity.ssl_context()) as client:
        def write(version: str) -> httpx.Response:
            return client.put(agent_port.url + STATUS, json={"status": {"agentVersion": version}})

        for served in ("0.3.0", "0.3.7", "0.2.0", "v0.2.9"):
            assert write(served).status_code == 200, served
        for refused in ("0.1.4", "1.3.0"):
            answer = write(refused)
            assert answer.status_code == 426, refused
            message = answer.json()["message"]
            assert f"agent version {refused} is too old for control plane 0.3.0" in message
            assert "agents 0.2 or newer are served; upgrade the agent" in message
        assert write("latest").status_code == 422
    # Enrolment says the same before it spends the token.
    late = Identity(tmp_path / "a2", "store-1", "a2", agent_port.ca_file.read_bytes())
    token = agent_port.bootstrap_token("store-1")
    monkeypatch.setattr("fleetplane.agent.enrolment.__version__", "0.1.0")
    with pytest.raises(EnrolmentError, match=r"426.*too old"):
        asyncio.run(Enroller(agent_port.url, late, token).ensure())
    monkeypatch.setattr("fleetplane.agent.enrolment.__version__", __version__)
    monkeypatch.setattr(heartbeat, "__version__", "0.2.0")
    assert asyncio.run(Enroller(agent_port.url, late, token).ensure()) is True


def test_a_refused_agent_says_why_on_healthz_and_in_its_log(
    agent_port: AgentPort, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = AgentProcess(agent_port, "store-1", tmp_path / "agent",
                         agent_port.bootstrap_token("store-1"))
    try:
        agent.start()
        wait_for(lambda: agent_port.site_status("store-1").get("agentVersion") == __version__,
                 30, "the agent's version in the site status")
        monkeypatch.setattr(heartbeat, "__version__", "0.3.0")  # the control plane upgrades
        refused = wait_for(lambda: agent.get("/healthz")["refused"], 30, "the refusal")
        assert f"refuses agent version {__version__}" in refused and "upgrade" in refused
        assert "ERROR fleetplane.agent: the control plane refuses agent version" in agent.log()
        assert agent.get("/healthz")["status"] == "ok"
    finally:
        agent.stop()
        stop_workloads(tmp_path / "agent")
