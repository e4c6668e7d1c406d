"""A real agent port on loopback (uvicorn + TLS + client certificates) and agent processes.

``fleetplane serve --agent-listen`` is being wired up separately; until then the
agent app runs in this process on a uvicorn server thread, with the same
mTLS protocol class serve will use, and agents talk to it over real TLS.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from fleetplane.control.agent_api.app import create_agent_app
from fleetplane.control.agent_api.credentials import save_bootstrap_token
from fleetplane.control.controllers.tables import ensure_tables
from fleetplane.control.controllers.transactions import write_site_states
from fleetplane.control.mtls import PeerCertificateProtocol
from fleetplane.control.plane import ControlPlane
from fleetplane.control.settings import Settings
from fleetplane.control.store.repository import Desired
from fleetplane.security import CertificateAuthority, create_bootstrap_token
from fleetplane.security.ca import certificate_pem
from fleetplane.security.keys import generate_private_key, private_key_pem

HERE = Path(__file__).resolve().parent

SITE_SPEC = {
    "tier": "edge", "region": "eu-west", "residencyZone": "eu",
    "nodePools": [{"name": "cpu", "count": 1, "cpu": 2, "memory": "4Gi", "nodeImage": "ubuntu"},
                  {"name": "spare", "count": 1, "cpu": 2, "memory": "4Gi",
                   "nodeImage": "ubuntu"}],
    "cost": {"opex": {"cpuHour": "0.04/h"}},
}


def wait_for(probe: Callable[[], Any], timeout: float = 30.0, what: str = "") -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or probe}")
        time.sleep(0.05)  # polling a condition, not waiting out a race


class _BoundServer(uvicorn.Server):
    """Binds the plane's change notifier to the server's loop, as ``create_app``'s lifespan does."""

    def __init__(self, config: uvicorn.Config, plane: ControlPlane) -> None:
        super().__init__(config)
        self.plane = plane

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self.plane.notifier.bind(asyncio.get_running_loop())
        await super().serve(sockets)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class AgentPort:
    """The control plane's agent port on 127.0.0.1, stoppable and restartable on the same port."""

    def __init__(self, directory: Path, certificate_lifetime: timedelta = timedelta(hours=1)
                 ) -> None:
        self.directory = directory
        self.settings = Settings(database_url=f"sqlite:///{directory / 'store.db'}")
        self.plane = ControlPlane.open(self.settings)
        ensure_tables(self.plane.engine)
        self.ca = CertificateAuthority.create("acme")
        self.ca_file = directory / "ca.crt"
        self.ca_file.write_bytes(self.ca.certificate_pem)
        key = generate_private_key()
        self.cert_file, self.key_file = directory / "server.crt", directory / "server.key"
        self.cert_file.write_bytes(certificate_pem(self.ca.issue_server_certificate(
            key.public_key(), ip_addresses=["127.0.0.1"])))
        self.key_file.write_bytes(private_key_pem(key))
        self.certificate_lifetime = certificate_lifetime
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        app = create_agent_app(self.plane, self.ca,
                               certificate_lifetime=self.certificate_lifetime)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, http=PeerCertificateProtocol,
            ssl_certfile=str(self.cert_file), ssl_keyfile=str(self.key_file),
            ssl_ca_certs=str(self.ca_file), ssl_cert_reqs=ssl.CERT_OPTIONAL,
            log_level="warning", timeout_graceful_shutdown=1, lifespan="off",
        )
        self._server = _BoundServer(config, self.plane)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        wait_for(lambda: self._server is not None and self._server.started, 20, "agent port")

    def stop(self) -> None:
        assert self._server is not None and self._thread is not None
        self._server.should_exit = True
        self._thread.join(15)
        assert not self._thread.is_alive(), "agent port did not stop"
        self._server = None

    def add_site(self, name: str) -> None:
        spec = {"os": "ubuntu-22.04", "containerRuntime": {"name": "containerd", "version": "1.7"},
                "arches": ["amd64"]}
        self.plane.store.apply([Desired("NodeImage", "ubuntu", {}, {}, spec),
                                Desired("Site", name, {}, {}, SITE_SPEC)], actor="test")

    def bootstrap_token(self, site: str) -> str:
        plaintext, record = create_bootstrap_token(site, timedelta(minutes=15),
                                                   now=datetime.now(UTC))
        save_bootstrap_token(self.plane.store, record, "test")
        return plaintext

    def desire(self, site: str, workloads: list[dict[str, Any]]) -> int:
        written = write_site_states(self.plane.store, {site: {"workloads": workloads}},
                                    actor="test", keep=100)
        return written[0].revision

    def site_status(self, site: str) -> dict[str, Any]:
        return self.plane.store.get("Site", site).status or {}


def inference(name: str, replicas: int = 1, model: Path | None = None,
              **env: str) -> dict[str, Any]:
    environment = {"FLEETPLANE_MODEL": str(model)} if model else {}
    return {
        "workload": name, "workloadClass": "inference", "pool": "cpu", "profile": "cpu",
        "replicas": replicas, "resources": {"cpu": 1, "memory": "1Gi"},
        "env": {**environment, **env},
        "failover": {"pools": ["spare"], "minReplicas": 0},
    }


def tiny(name: str, replicas: int = 1, memory: str = "256Mi", pool: str = "cpu",
         failover: list[str] | None = None, **env: str) -> dict[str, Any]:
    """A workload of tiny_service.py (starts in milliseconds; TINY_HOG_MB hogs memory)."""
    return {
        "workload": name, "workloadClass": "inference", "pool": pool, "profile": "cpu",
        "replicas": replicas, "resources": {"cpu": 1, "memory": memory},
        "env": {"FLEETPLANE_ENTRYPOINT": "tiny_service", "PYTHONPATH": str(HERE), **env},
        "failover": {"pools": ["spare"] if failover is None else failover, "minReplicas": 0},
    }


class AgentProcess:
    """`fleetplane agent` as a real process."""

    def __init__(self, port: AgentPort, site: str, data_dir: Path, token: str | None,
                 extra: list[str] | None = None, server: str | None = None) -> None:
        self.port, self.site, self.data_dir, self.token = port, site, data_dir, token
        self.extra = extra or []
        # Another address of the same agent port (e.g. through a relay).
        self.server = server or port.url
        self.health = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "fleetplane.agent",
                   "--server", self.server, "--site", self.site,
                   "--data-dir", str(self.data_dir), "--ca-cert", str(self.port.ca_file),
                   "--agent-id", "a1", "--health-listen", f"127.0.0.1:{self.health}",
                   "--heartbeat-interval", "0.5", "--telemetry-interval", "1"]
        if self.token:
            command += ["--bootstrap-token", self.token]
        command += self.extra
        log = (self.data_dir.parent / f"agent-{self.site}.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log.close()
        wait_for(lambda: self.get("/healthz") is not None, 60, "agent health endpoint")

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)

    def get(self, path: str) -> Any:
        try:
            answer = httpx.get(f"http://127.0.0.1:{self.health}{path}", timeout=2, trust_env=False)
        except httpx.HTTPError:
            return None
        return answer.json() if answer.headers.get("content-type", "").startswith(
            "application/json") else answer.text

    def post(self, path: str) -> Any:
        return httpx.post(f"http://127.0.0.1:{self.health}{path}", timeout=2,
                          trust_env=False).json()

    def replicas(self) -> list[dict[str, Any]]:
        return self.get("/v1/replicas") or []

    def log(self) -> str:
        return (self.data_dir.parent / f"agent-{self.site}.log").read_text()


def stop_workloads(data_dir: Path) -> None:
    """Kill workload processes an agent left behind (the agent never stops them on exit)."""
    import sqlite3

    path = data_dir / "state.db"
    if not path.exists():
        return
    try:
        database = sqlite3.connect(path)
        rows = database.execute("SELECT pid FROM replicas").fetchall()
        for table in ("surge_replicas", "draining_replicas"):
            if database.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)
                                ).fetchone():
                rows += database.execute(f"SELECT pid FROM {table}").fetchall()
    except sqlite3.DatabaseError:
        return
    for (pid,) in rows:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


def predict(port: int) -> int:
    answer = httpx.post(f"http://127.0.0.1:{port}/predict", timeout=5, trust_env=False,
                        json={"pixels": [[0] * 64]})
    return answer.status_code


def dump(value: Any) -> str:
    return json.dumps(value, indent=1)
