"""Releases and secrets from the control plane to a workload process, for real.

A real ``fleetplane serve`` (placement engine, agent port over mTLS, Secrets
encrypted at rest), releases pushed with the real CLI, a real agent process
and the workload as a real process started from the unpacked release. The
workload reports what it sees (working directory, environment, a digest of
its secret file and the file's mode) over HTTP.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import free_port, predict, stop_workloads, wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "control"))
from control_harness import ServerProcess, running_server

from fleetplane.security import SpiffeId, build_csr, generate_private_key
from fleetplane.security.keyring import generate_key_text
from fleetplane.security.keys import private_key_pem
from fleetplane.security.tls import client_context

V1 = "/apis/fleetplane/v1"

SERVE_PY = '''\
"""A tiny workload: tells what it sees, never the secret itself."""
import argparse, hashlib, json, os, stat
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path in ("/livez", "/readyz"):
            return self._send(200, {"ok": True})
        if self.path != "/info":
            return self._send(404, {})
        folder = Path(os.environ["FLEETPLANE_SECRETS_DIR"])
        secret = folder / "db" / "password"
        self._send(200, {
            "cwd": os.getcwd(), "greeting": os.environ.get("GREETING"),
            "version": Path("VERSION").read_text().strip(),
            "artifactDir": os.environ.get("FLEETPLANE_ARTIFACT_DIR"),
            "secretSha256": hashlib.sha256(secret.read_bytes()).hexdigest(),
            "secretMode": oct(stat.S_IMODE(secret.stat().st_mode)),
            "secretDirMode": oct(stat.S_IMODE(folder.stat().st_mode)),
            "passwordInEnvironment": any("hunter" in v for v in os.environ.values()),
        })

    def _send(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, required=True)
ThreadingHTTPServer(("127.0.0.1", parser.parse_args().port), Handler).serve_forever()
'''

FLEET = """\
apiVersion: fleetplane/v1
kind: NodeImage
metadata: {{name: ubuntu}}
spec: {{os: ubuntu-22.04, containerRuntime: {{name: containerd, version: "1.7"}}, arches: [amd64]}}
---
apiVersion: fleetplane/v1
kind: Site
metadata: {{name: a}}
spec:
  tier: edge
  region: eu-west
  residencyZone: eu
  nodePools: [{{name: cpu, count: 2, cpu: 8, memory: 32Gi, nodeImage: ubuntu}}]
  cost: {{opex: {{cpuHour: 0.04/h}}}}
---
apiVersion: fleetplane/v1
kind: Site
metadata: {{name: b}}
spec:
  tier: edge
  region: eu-west
  residencyZone: eu
  nodePools: [{{name: cpu, count: 1, cpu: 1, memory: 256Mi, nodeImage: ubuntu}}]
  cost: {{opex: {{cpuHour: 0.01/h}}}}
---
apiVersion: fleetplane/v1
kind: Secret
metadata: {{name: db}}
spec: {{data: {{password: {password}}}}}
---
{workload}
"""

WORKLOAD = """\
apiVersion: fleetplane/v1
kind: Workload
metadata: {{name: hello}}
spec:
  class: batch
  slo: {{deadline: 6h}}
  resources: {{cpu: 1, memory: 1Gi}}
  profiles: [{{hardware: cpu, runtime: 1h}}]
  artifact: {{name: hello, version: "{version}"}}
  secrets: [db]
  env: {{GREETING: hello, FLEETPLANE_ENTRYPOINT: serve}}
"""

DIGITS = """\
apiVersion: fleetplane/v1
kind: Workload
metadata: {name: digits}
spec:
  class: batch
  slo: {deadline: 6h}
  resources: {cpu: 1, memory: 1Gi}
  profiles: [{hardware: cpu, runtime: 1h}]
  artifact: {name: digits-model, version: "1"}
  env: {FLEETPLANE_MODEL: digits.npz}
"""


class Fleet:
    """A served control plane with an agent port, and the helpers a scenario needs."""

    def __init__(self, server: ServerProcess, agent_url: str, ca_dir: Path, workdir: Path,
                 store_file: Path) -> None:
        self.server, self.agent_url, self.ca_dir = server, agent_url, ca_dir
        self.workdir, self.store_file = workdir, store_file
        self.people = httpx.Client(base_url=server.url, timeout=30.0, trust_env=False,
                                   headers={"Authorization": f"Bearer {server.token}"})

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "FLEETPLANE_SERVER": self.server.url,
               "FLEETPLANE_TOKEN": self.server.token}
        return subprocess.run(
            [sys.executable, "-c", "from fleetplane.cli.main import run; run()", *args],
            capture_output=True, text=True, env=env, timeout=120, check=False)

    def push(self, version: str, name: str = "hello", release: Path | None = None) -> str:
        if release is None:
            release = self.workdir / f"release-{version}"
            release.mkdir()
            (release / "serve.py").write_text(SERVE_PY)
            (release / "VERSION").write_text(version + "\n")
        pushed = self.cli("artifact", "push", str(release), "--name", name,
                          "--version", version)
        assert pushed.returncode == 0, pushed.stderr
        digest = pushed.stdout.strip()
        assert digest.startswith("sha256:")
        return digest

    def apply(self, text: str) -> None:
        applied = self.people.post(f"{V1}/apply", content=text,
                                   headers={"Content-Type": "application/yaml"})
        assert applied.status_code == 200, applied.text

    def desired_digest(self, site: str, workload: str = "hello") -> str | None:
        answer = self.people.get(f"{V1}/sitedesiredstates/{site}")
        if answer.status_code != 200:
            return None
        for item in answer.json()["spec"]["workloads"]:
            if item["workload"] == workload and item.get("artifacts"):
                digest: str = item["artifacts"][0]["digest"]
                return digest
        return None

    def bootstrap_token(self, site: str) -> str:
        issued = self.cli("site", "bootstrap-token", site, "--ttl", "5m")
        assert issued.returncode == 0, issued.stderr
        return issued.stdout.strip().splitlines()[-1]

    def enrol_by_hand(self, site: str) -> tuple[Path, Path]:
        """A certificate for ``site`` (what its agent would hold), to make requests with."""
        key = generate_private_key()
        csr = build_csr(key, SpiffeId("acme", site, "probe")).decode("ascii")
        with self.agent_client() as anonymous:
            answer = anonymous.post("/agent/v1/enrol", json={
                "token": self.bootstrap_token(site), "csr": csr, "agentId": "probe"})
        assert answer.status_code == 200, answer.text
        cert, key_file = self.workdir / f"{site}.crt", self.workdir / f"{site}.key"
        cert.write_text(answer.json()["certificate"])
        key_file.write_bytes(private_key_pem(key))
        return cert, key_file

    def agent_client(self, cert: Path | None = None, key: Path | None = None) -> httpx.Client:
        context = client_context((self.ca_dir / "ca.crt").read_bytes(), cert_file=cert,
                                 key_file=key)
        return httpx.Client(base_url=self.agent_url, verify=context, timeout=10.0,
                            trust_env=False)

    def workload_state(self, site: str) -> dict[str, Any] | None:
        status = self.people.get(f"{V1}/sites/{site}").json().get("status") or {}
        return next((w for w in status.get("workloads", []) if w["workload"] == "hello"), None)


class Agent:
    """`fleetplane agent` for site a as a real process, logging at debug level."""

    def __init__(self, fleet: Fleet, data_dir: Path) -> None:
        self.fleet, self.data_dir = fleet, data_dir
        self.health = free_port()
        self.log_file = data_dir.parent / "agent.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, token: str) -> None:
        command = [sys.executable, "-c", "from fleetplane.cli.main import run; run()", "agent",
                   "--server", self.fleet.agent_url, "--site", "a",
                   "--data-dir", str(self.data_dir),
                   "--ca-cert", str(self.fleet.ca_dir / "ca.crt"), "--agent-id", "a1",
                   "--health-listen", f"127.0.0.1:{self.health}",
                   "--heartbeat-interval", "0.5", "--log-level", "debug",
                   "--bootstrap-token", token]
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        wait_for(lambda: self.get("/healthz") is not None, 60, "agent health endpoint")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)

    def get(self, path: str) -> Any:
        try:
            answer = httpx.get(f"http://127.0.0.1:{self.health}{path}", timeout=2,
                               trust_env=False)
        except httpx.HTTPError:
            return None
        return answer.json() if answer.status_code == 200 else None

    def ready(self, workload: str = "hello") -> dict[str, Any] | None:
        replicas = self.get("/v1/replicas") or []
        return next((r for r in replicas if r["workload"] == workload and r["state"] == "Ready"),
                    None)

    def releases(self) -> set[str]:
        return {p.name for p in (self.data_dir / "artifacts" / "releases").iterdir()}


def info(replica: dict[str, Any]) -> dict[str, Any]:
    """What the replica reports; empty while it is not answering (being replaced)."""
    try:
        answer = httpx.get(f"http://127.0.0.1:{replica['port']}/info", timeout=5,
                           trust_env=False)
    except httpx.HTTPError:
        return {}
    result: dict[str, Any] = answer.json() if answer.status_code == 200 else {}
    return result


def serving(agent: Agent, version: str) -> dict[str, Any] | None:
    replica = agent.ready()
    return replica if replica is not None and info(replica).get("version") == version else None


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    key_file = tmp_path / "secrets.key"
    key_file.write_text(generate_key_text() + "\n")
    agent_port = free_port()
    store_file = tmp_path / "store.db"
    with running_server(
        f"sqlite:///{store_file}", tmp_path,
        "--agent-listen", f"127.0.0.1:{agent_port}", "--ca-dir", str(tmp_path / "ca"),
        "--fleet", "acme", "--secrets-key-file", str(key_file),
    ) as server:
        found = Fleet(server, f"https://127.0.0.1:{agent_port}", tmp_path / "ca", tmp_path,
                      store_file)
        yield found
        found.people.close()


@pytest.fixture
def agent(fleet: Fleet, tmp_path: Path) -> Iterator[Agent]:
    process = Agent(fleet, tmp_path / "agent")
    yield process
    process.stop()
    stop_workloads(tmp_path / "agent")


def test_release_runs_updates_keep_the_previous_and_secrets_stay_private(
    fleet: Fleet, agent: Agent
) -> None:
    password = f"hunter-{secrets.token_hex(12)}"
    first = fleet.push("1")
    fleet.apply(FLEET.format(password=password, workload=WORKLOAD.format(version="1")))
    wait_for(lambda: fleet.desired_digest("a") == first, 120, "site a to run hello 1")
    agent.start(fleet.bootstrap_token("a"))

    replica = wait_for(agent.ready, 60, "hello from release 1 ready")
    seen = info(replica)
    release_1 = agent.data_dir / "artifacts" / "releases" / first.removeprefix("sha256:")
    assert seen["cwd"] == seen["artifactDir"] == str(release_1)
    assert (seen["version"], seen["greeting"]) == ("1", "hello")
    assert seen["secretSha256"] == hashlib.sha256(password.encode()).hexdigest()
    assert (seen["secretMode"], seen["secretDirMode"]) == ("0o600", "0o700")
    assert seen["passwordInEnvironment"] is False
    wait_for(lambda: (fleet.workload_state("a") or {}).get("state") == "Running", 30,
             "status Running")

    # Two updates: each runs from its own release; the one before stays cached, older go.
    second = fleet.push("2")
    fleet.apply(WORKLOAD.format(version="2"))
    wait_for(lambda: serving(agent, "2"), 120, "release 2")
    assert agent.releases() == {first[7:], second[7:]}
    third = fleet.push("3")
    fleet.apply(WORKLOAD.format(version="3"))
    running = wait_for(lambda: serving(agent, "3"), 120, "release 3")
    wait_for(lambda: agent.releases() == {second[7:], third[7:]}, 30, "release 1 collected")
    assert not list((agent.data_dir / "artifacts" / "staging").iterdir())

    # mTLS: a site reads only what its own desired state names.
    identity = agent.data_dir / "identity.pem"
    with fleet.agent_client(identity, identity) as own:
        blob = own.get(f"/agent/v1/artifacts/{third}")
        assert blob.status_code == 200
        assert "sha256:" + hashlib.sha256(blob.content).hexdigest() == third
        assert own.get(f"/agent/v1/artifacts/{first}").status_code == 403  # no longer named
        assert own.get(f"{V1}/secrets/db").status_code == 200
    cert_b, key_b = fleet.enrol_by_hand("b")
    with fleet.agent_client(cert_b, key_b) as other:
        assert other.get(f"/agent/v1/artifacts/{third}").status_code == 403
        refused = other.get(f"{V1}/secrets/db")
        assert refused.status_code == 403 and password not in refused.text

    # The control plane goes away: a killed replica comes back from the cached release.
    fleet.server.stop()
    wait_for(lambda: (agent.get("/healthz") or {}).get("connected") is False, 30, "outage seen")
    os.killpg(running["pid"], signal.SIGKILL)
    back = wait_for(lambda: (r := agent.ready()) and r["pid"] != running["pid"] and r, 60,
                    "replica restarted offline")
    assert info(back)["version"] == "3"

    # The secret is in its file and nowhere else: not in logs, not in the agent's state.
    agent.stop()
    places = [agent.log_file, fleet.server.log, agent.data_dir / "state.db",
              *agent.data_dir.joinpath("logs").iterdir(),
              *agent.data_dir.joinpath("artifacts").glob("*.json")]
    for place in places:
        assert password.encode() not in place.read_bytes(), f"secret leaked into {place}"
    for store_file in fleet.workdir.glob("store.db*"):  # encrypted at rest, WAL included
        assert password.encode() not in store_file.read_bytes()
    assert (agent.data_dir / "secrets" / "hello" / "db" / "password").read_text() == password


def test_a_tampered_release_is_not_started_and_the_status_says_why(
    fleet: Fleet, agent: Agent
) -> None:
    digest = fleet.push("1")
    # Flip bytes of the stored blob behind the server's back (same length, other content).
    with sqlite3.connect(fleet.store_file) as database:
        (data,) = database.execute(
            "SELECT data FROM fleetplane_artifact_chunks WHERE owner = ? AND seq = 0", (digest,)
        ).fetchone()
        database.execute("UPDATE fleetplane_artifact_chunks SET data = ? WHERE owner = ? "
                         "AND seq = 0", (bytes(b ^ 0xFF for b in data), digest))
    fleet.apply(FLEET.format(password="x", workload=WORKLOAD.format(version="1")))
    wait_for(lambda: fleet.desired_digest("a") == digest, 120, "site a to run hello 1")
    agent.start(fleet.bootstrap_token("a"))

    failed = wait_for(lambda: (s := fleet.workload_state("a")) and s["state"] == "Failed" and s,
                      60, "status Failed")
    assert "ArtifactVerificationFailed" in failed["message"]
    assert f"not {digest}" in failed["message"] and "not installed" in failed["message"]
    assert failed["ready"] == 0
    assert [r for r in agent.get("/v1/replicas") or [] if r["workload"] == "hello"] == []
    assert agent.releases() == set()
    assert not list((agent.data_dir / "artifacts" / "staging").iterdir())
    assert "workload hello not started" in agent.log_file.read_text()
    delivered = agent.data_dir / "artifacts" / "delivered.json"
    assert "hello" not in (json.loads(delivered.read_text()) if delivered.exists() else {})


def test_the_bundled_inference_service_serves_the_model_of_its_release(
    fleet: Fleet, agent: Agent, model_file: Path
) -> None:
    # The release holds only the trained model; the replica loads it by a relative path.
    release = fleet.workdir / "digits-release"
    release.mkdir()
    (release / "digits.npz").write_bytes(model_file.read_bytes())
    digest = fleet.push("1", name="digits-model", release=release)
    fleet.apply(FLEET.format(password="x", workload=DIGITS))
    wait_for(lambda: fleet.desired_digest("a", "digits") == digest, 120, "site a runs digits")
    agent.start(fleet.bootstrap_token("a"))
    replica = wait_for(lambda: agent.ready("digits"), 90, "digits ready")
    assert predict(replica["port"]) == 200
    log = (agent.data_dir / "logs" / "digits-0.log").read_text()
    assert "Traceback" not in log
