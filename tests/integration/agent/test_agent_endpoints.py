"""The agent's own /healthz and Prometheus /metrics, and its lean entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
from harness import AgentPort, AgentProcess, stop_workloads, tiny, wait_for
from prometheus_client.parser import text_string_to_metric_families

from fleetplane import __version__

HEAVY = ("numpy", "scipy", "numba", "pandas", "typer", "rich", "fastapi", "starlette",
         "uvicorn", "sqlalchemy", "fleetplane.cli", "fleetplane.control", "fleetplane.placement",
         "fleetplane.simulate")


def test_healthz_and_metrics(agent_port: AgentPort, tmp_path: Path) -> None:
    agent = AgentProcess(agent_port, "store-1", tmp_path / "agent",
                         agent_port.bootstrap_token("store-1"))
    try:
        agent.start()
        agent_port.desire("store-1", [tiny("svc", replicas=2)])
        wait_for(lambda: len([r for r in agent.replicas() if r["state"] == "Ready"]) == 2, 60,
                 "two ready replicas")
        health = wait_for(lambda: (h := agent.get("/healthz"))["connected"] and h, 30, "connected")
        assert health == {"status": "ok", "connected": True, "appliedRevision": 1,
                          "agentVersion": __version__, "refused": None, "failedPools": []}
        text = httpx.get(f"http://127.0.0.1:{agent.health}/metrics", trust_env=False).text
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for family in text_string_to_metric_families(text) for s in family.samples}
        assert samples[("fleetplane_agent_info", (("version", __version__),))] == 1
        assert samples[("fleetplane_agent_connected", ())] == 1
        assert samples[("fleetplane_agent_applied_revision", ())] == 1
        assert 0 < samples[("fleetplane_agent_certificate_expiry_seconds", ())] <= 3600
        for index in ("0", "1"):
            key = ("fleetplane_agent_replica_restarts_total",
                   (("replica", index), ("workload", "svc")))
            assert samples[key] == 0
        wait_for(lambda: "fleetplane_agent_heartbeats_total 0.0" not in agent.get("/metrics"),
                 30, "a heartbeat counted")
        missing = httpx.get(f"http://127.0.0.1:{agent.health}/nope", trust_env=False)
        assert missing.status_code == 404 and "no route GET /nope" in missing.text
    finally:
        agent.stop()
        stop_workloads(tmp_path / "agent")


def test_the_agent_entry_point_imports_nothing_heavy() -> None:
    code = ("import sys, fleetplane.agent.command, fleetplane.agent.agent, "
            "fleetplane.agent.runtimes.process; print('\\n'.join(sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                            text=True).stdout.split()
    heavy = sorted(m for m in loaded if any(m == h or m.startswith(h + ".") for h in HEAVY))
    assert heavy == []


def test_bad_options_are_named(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "fleetplane.agent", "--server", "http://127.0.0.1:1",
         "--site", "s", "--data-dir", str(tmp_path), "--ca-cert", str(tmp_path / "ca.crt")],
        capture_output=True, text=True)
    assert run.returncode == 1
    assert "--server 'http://127.0.0.1:1': the agent port speaks TLS only (use https://" \
        in run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "fleetplane.agent", "--server", "https://127.0.0.1:1",
         "--site", "s", "--data-dir", str(tmp_path), "--ca-cert", str(tmp_path / "ca.crt")],
        capture_output=True, text=True)
    assert "--ca-cert" in run.stderr and "file not found" in run.stderr
