"""Spec changes without waste or gaps: a missed backlog reconciled once, surge replacement."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import AgentPort, AgentProcess, stop_workloads, tiny, wait_for
from record_relay import RecordRelay


@pytest.fixture
def relay(agent_port: AgentPort) -> Iterator[RecordRelay]:
    spaced = RecordRelay(agent_port.port, gap=0.5)
    spaced.start()
    yield spaced
    spaced.stop()


def _tag(port: int) -> str | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/tag", timeout=2, trust_env=False).text
    except httpx.HTTPError:
        return None


def _ready_tag(agent: AgentProcess, workload: str) -> list[str]:
    return [tag for r in agent.replicas()
            if r["workload"] == workload and r["state"] == "Ready"
            and (tag := _tag(r["port"])) is not None]


def _started_tags(journal: Path) -> list[str]:
    if not journal.exists():
        return []
    return [line.split(" ", 1)[1] for line in journal.read_text().splitlines()]


def test_missed_revisions_are_recorded_in_order_and_only_the_newest_is_started(
    agent_port: AgentPort, relay: RecordRelay, tmp_path: Path
) -> None:
    journal = tmp_path / "starts.txt"
    agent = AgentProcess(agent_port, "store-1", tmp_path / "agent",
                         agent_port.bootstrap_token("store-1"),
                         server=f"https://127.0.0.1:{relay.port}")
    try:
        agent.start()
        agent_port.desire("store-1", [tiny("echo", TINY_STARTS=str(journal), TINY_TAG="1")])
        wait_for(lambda: _ready_tag(agent, "echo") == ["1"], 60, "revision 1 serving")

        agent_port.stop()
        wait_for(lambda: (agent.get("/healthz") or {}).get("connected") is False, 60,
                 "the agent to notice the server is gone")
        assert agent_port.desire("store-1", [tiny("echo", TINY_STARTS=str(journal),
                                                  TINY_TAG="2")]) == 2
        assert agent_port.desire("store-1", [tiny("echo", TINY_STARTS=str(journal),
                                                  TINY_TAG="3")]) == 3
        agent_port.start()

        wait_for(lambda: _ready_tag(agent, "echo") == ["3"], 90, "revision 3 serving")
        assert agent.get("/v1/revisions") == [1, 2, 3]
        # Revision 2 was superseded before the agent could act on it: never started.
        assert _started_tags(journal) == ["1", "3"]
        # One line per HTTP request from httpx would have filled this log (fix: WARNING).
        assert "HTTP Request:" not in agent.log()
    finally:
        agent.stop()
        stop_workloads(tmp_path / "agent")


def _serving(agent: AgentProcess, workload: str) -> list[dict[str, Any]]:
    return [r for r in agent.replicas() if r["workload"] == workload and r["state"] == "Ready"]
