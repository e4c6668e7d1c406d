"""Spec changes without waste or gaps: a missed backlog reconciled once, surge replacement,
a replaced replica's drain beside the reconcile loop."""

from __future__ import annotations

import sqlite3
import threading
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


class Client:
    """Looks the workload up in /v1/replicas before every request, as a local router would."""

    def __init__(self, agent: AgentProcess, workload: str) -> None:
        self.agent, self.workload = agent, workload
        self.answers: list[str] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Client:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(20)

    def _run(self) -> None:
        with httpx.Client(trust_env=False, timeout=5) as http:
            while not self._stop.is_set():
                serving = _serving(self.agent, self.workload)
                if not serving:
                    self.failures.append("no ready replica listed")
                    continue
                try:
                    answer = http.get(f"http://127.0.0.1:{serving[0]['port']}/tag")
                    answer.raise_for_status()
                    self.answers.append(answer.text)
                except httpx.HTTPError as error:
                    self.failures.append(f"{type(error).__name__}: {error}")


def test_a_spec_change_starts_the_replacement_before_stopping_the_replica(
    agent_port: AgentPort, tmp_path: Path
) -> None:
    agent = AgentProcess(agent_port, "store-1", tmp_path / "agent",
                         agent_port.bootstrap_token("store-1"))
    try:
        agent.start()
        agent_port.desire("store-1", [tiny("echo", TINY_TAG="1")])
        wait_for(lambda: _ready_tag(agent, "echo") == ["1"], 60, "revision 1 serving")
        with Client(agent, "echo") as client:
            wait_for(lambda: client.answers, 20, "the client's first answer")
            agent_port.desire("store-1", [tiny("echo", TINY_TAG="2")])
            wait_for(lambda: _ready_tag(agent, "echo") == ["2"] and len(agent.replicas()) == 1,
                     60, "the replacement serving alone")
            first_seen_two = len(client.answers)
            wait_for(lambda: len(client.answers) > first_seen_two + 20, 20, "more answers")
            assert client.failures == [], "a request failed while the replica was replaced"
            serving = _serving(agent, "echo")[0]

            # A replacement that never gets ready: the running replica keeps serving.
            agent_port.desire("store-1", [tiny("echo", TINY_TAG="3",
                                               FLEETPLANE_ENTRYPOINT="tiny_service_missing")])
            wait_for(lambda: "replacement did not become ready: exited with code 1" in
                     _reasons(agent, "echo"), 60, "the failed replacement reported")
            wait_for(lambda: "replacement did not become ready" in " ".join(
                str(w.get("message")) for w in agent_port.site_status("store-1").get(
                    "workloads", [])), 30, "the failure in the site status")
            answered = len(client.answers)
            wait_for(lambda: len(client.answers) > answered + 20, 20, "answers after it")
        assert client.failures == []
        assert set(client.answers) == {"1", "2"}
        assert _serving(agent, "echo")[0]["pid"] == serving["pid"]
        assert _ready_tag(agent, "echo") == ["2"]
    finally:
        agent.stop()
        stop_workloads(tmp_path / "agent")


def _reasons(agent: AgentProcess, workload: str) -> str:
    return " ".join(r["reason"] or "" for r in agent.replicas() if r["workload"] == workload)


def _running(pid: int) -> bool:
    """Not ended (a zombie the agent has not reaped yet counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _draining_pids(data_dir: Path) -> set[int]:
    with sqlite3.connect(data_dir / "state.db") as database:
        return {pid for (pid,) in database.execute("SELECT pid FROM draining_replicas")}


def test_a_replaced_replica_drains_beside_the_next_change_and_a_restarted_agent_stops_it(
    agent_port: AgentPort, tmp_path: Path
) -> None:
    journal = tmp_path / "starts.txt"
    data_dir = tmp_path / "agent"
    agent = AgentProcess(agent_port, "store-1", data_dir, agent_port.bootstrap_token("store-1"))

    def echo(tag: str) -> dict[str, Any]:
        # Ignoring SIGTERM, a replaced replica lives through the drain and the whole grace
        # period (2 s + 5 s) before the agent's SIGKILL.
        return tiny("echo", TINY_STARTS=str(journal), TINY_TAG=tag, TINY_IGNORE_TERM="1")

    def pid_of(tag: str) -> int:
        return next(int(pid) for pid, started in (line.split(" ", 1) for line in
                                                  journal.read_text().splitlines())
                    if started == tag)

    try:
        agent.start()
        agent_port.desire("store-1", [echo("1")])
        wait_for(lambda: _ready_tag(agent, "echo") == ["1"], 60, "revision 1 serving")
        agent_port.desire("store-1", [echo("2")])
        wait_for(lambda: _ready_tag(agent, "echo") == ["2"] and len(agent.replicas()) == 1,
                 60, "the replacement serving alone")
        # The reconcile loop does not wait for the replaced replica to drain and stop: the
        # next change is started while it still runs (before, that waited 2 s + the grace).
        agent_port.desire("store-1", [echo("3")])
        wait_for(lambda: "3" in _started_tags(journal), 60, "revision 3's replica started")
        assert _running(pid_of("1")), "the next change waited for the drain to end"
        wait_for(lambda: _ready_tag(agent, "echo") == ["3"] and len(agent.replicas()) == 1,
                 60, "revision 3 serving alone")

        # Stopped while revision 2's replica drains: it is left running and recorded ...
        assert pid_of("2") in _draining_pids(data_dir)
        agent.stop()
        assert _running(pid_of("2"))
        # ... and the next agent stops it (it is listed nowhere).
        agent.start()
        wait_for(lambda: not _running(pid_of("2")) and not _running(pid_of("1")), 60,
                 "the replaced replicas stopped")
        wait_for(lambda: not _draining_pids(data_dir), 10, "their records removed")
        assert _ready_tag(agent, "echo") == ["3"]
    finally:
        agent.stop()
        stop_workloads(data_dir)


def test_a_removed_workload_stops_beside_the_next_change(
    agent_port: AgentPort, tmp_path: Path
) -> None:
    journal = tmp_path / "starts.txt"
    data_dir = tmp_path / "agent"
    agent = AgentProcess(agent_port, "store-1", data_dir, agent_port.bootstrap_token("store-1"))
    # Ignoring SIGTERM, the removed replica lives through the whole grace period (5 s).
    old = tiny("old", TINY_STARTS=str(journal), TINY_TAG="old", TINY_IGNORE_TERM="1")
    fresh = tiny("fresh", TINY_STARTS=str(journal), TINY_TAG="fresh")

    def pid_of(tag: str) -> int:
        return next(int(pid) for pid, started in (line.split(" ", 1) for line in
                                                  journal.read_text().splitlines())
                    if started == tag)

    try:
        agent.start()
        agent_port.desire("store-1", [old])
        wait_for(lambda: _ready_tag(agent, "old") == ["old"], 60, "the old workload serving")
        agent_port.desire("store-1", [fresh])
        wait_for(lambda: _ready_tag(agent, "fresh") == ["fresh"], 60, "the new workload serving")
        # Before, the loop stopped the removed replica first: SIGTERM, the grace period, SIGKILL.
        assert _running(pid_of("old")), "the new workload waited for the removed one's stop"
        assert [r["workload"] for r in agent.replicas()] == ["fresh"]
        assert pid_of("old") in _draining_pids(data_dir)
        wait_for(lambda: not _running(pid_of("old")), 60, "the removed replica stopped")
        wait_for(lambda: not _draining_pids(data_dir), 10, "its record removed")
    finally:
        agent.stop()
        stop_workloads(data_dir)
