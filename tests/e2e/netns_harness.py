"""WAN sites in network namespaces, a real ``fleetplane serve`` and real agents inside them.

``scripts/netns-site.sh`` builds the network: the root namespace is
10.200.0.1, each site ``siteX`` a namespace at 10.200.X.2 behind a router
namespace that can impair (delay, jitter, loss) and partition each site's
link. Only 10.200.0.0/16 is routed; nothing leaves the machine. The server
listens on 10.200.0.1 (human API over TLS, agent port over mTLS); each
agent, its workloads and a load client run inside their site's namespace
(``ip netns exec``), so a partition cuts them off exactly as a WAN outage
would, while the site's own loopback keeps working.

The agent's own endpoint listens on the site's loopback, which the test
reaches through ``ip netns exec`` (that path does not cross the WAN link,
so it works during a partition too).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "netns-site.sh"
HOST = "10.200.0.1"
V1 = "/apis/fleetplane/v1"
LOCK_FILE = Path("/run/lock/fleetplane-netns-site.lock")
READY_TIMEOUT = 90.0


def wait_for(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``probe`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)  # polling a condition, not waiting out a race


# --- can this machine do it? ------------------------------------------------------------------


def netns_unavailable_reason() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is not installed"
    if subprocess.run(["ip", "netns", "list"], capture_output=True).returncode != 0:
        return "`ip netns` does not work on this kernel"
    if not Path("/dev/net/tun").exists() and not _has_netem():
        return "neither sch_netem nor /dev/net/tun is available to impair links"
    return None


def _has_netem() -> bool:
    return Path("/sys/module/sch_netem").exists()


def require_netns() -> None:
    """Skip without namespaces — unless CI=true, where the test must run and so fails instead."""
    reason = netns_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the partition test must run)")
    pytest.skip(reason)


@contextlib.contextmanager
def exclusive_network(timeout: float = 300.0) -> Iterator[None]:
    """One WAN emulation per machine: the namespace names and 10.200/16 are global."""
    LOCK_FILE.parent.mkdir(parents=True, exist_ok=True)
    with LOCK_FILE.open("w") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{LOCK_FILE} stayed locked for {timeout:.0f} s: "
                                         "another netns test is running") from None
                time.sleep(0.5)  # waiting for another test run to release the network
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# --- the network ------------------------------------------------------------------------------


class Network:
    """``scripts/netns-site.sh``: sites site1..siteN behind an impairable WAN router."""

    def __init__(self, sites: int) -> None:
        self.sites = [f"site{i}" for i in range(1, sites + 1)]

    def run(self, *arguments: str) -> str:
        done = subprocess.run(["bash", str(SCRIPT), *arguments], capture_output=True, text=True)
        if done.returncode != 0:
            raise AssertionError(f"netns-site.sh {' '.join(arguments)} failed "
                                 f"({done.returncode}): {done.stdout}{done.stderr}")
        return done.stdout

    def up(self) -> None:
        if Path("/run/netns/wan").exists():
            raise AssertionError("a WAN emulation is already up (/run/netns/wan exists): "
                                 "run `scripts/netns-site.sh down` if no test is using it")
        try:
            self.run("up", str(len(self.sites)))
        except AssertionError:
            self.down()  # half-built: the namespaces are ours, nobody else's
            raise

    def impair(self, site: str, spec: str) -> None:
        self.run("impair", site, spec)

    def partition(self, site: str) -> None:
        self.run("partition", site)

    def heal(self) -> None:
        self.run("heal")

    def down(self) -> None:
        for site in self.sites:
            kill_namespace_processes(site)
        self.run("down")


def in_site(site: str, *command: str) -> list[str]:
    return ["ip", "netns", "exec", site, *command]


def namespace_pids(site: str) -> set[int]:
    listed = subprocess.run(["ip", "netns", "pids", site], capture_output=True, text=True)
    return {int(pid) for pid in listed.stdout.split()} if listed.returncode == 0 else set()


def kill_namespace_processes(site: str) -> None:
    """SIGKILL what this test started in ``site`` (agent, workloads, client), not the link relay."""
    relay = Path(f"/run/netns-site/{site}.relay.pid")
    keep = {int(relay.read_text())} if relay.exists() else set()
    for pid in namespace_pids(site) - keep:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def free_port(host: str = HOST) -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


_GET = ("import sys, urllib.request\n"
        "print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())")


def site_get(site: str, url: str) -> Any:
    """GET a URL from inside ``site`` (its loopback); the JSON answer, or None on failure."""
    done = subprocess.run(in_site(site, sys.executable, "-c", _GET, url),
                          capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return None
    try:
        return json.loads(done.stdout)
    except ValueError:
        return done.stdout


# --- the control plane ------------------------------------------------------------------------


class Server:
    """``fleetplane serve`` on 10.200.0.1: the human API over TLS and the agent port (mTLS)."""

    def __init__(self, directory: Path, *extra: str) -> None:
        from fleetplane.control.agent_api.serving import load_or_create_ca
        from fleetplane.security.ca import certificate_pem
        from fleetplane.security.keys import generate_private_key, private_key_pem

        self.directory = directory
        self.ca_dir = directory / "ca"
        # serve loads this CA (it creates one only when the directory is empty), so the
        # human API's certificate and the agent port's chain to the same root.
        ca = load_or_create_ca(self.ca_dir, "acme")
        key = generate_private_key()
        self.api_cert, self.api_key = directory / "api.crt", directory / "api.key"
        self.api_cert.write_bytes(certificate_pem(
            ca.issue_server_certificate(key.public_key(), ip_addresses=[HOST])))
        self.api_key.write_bytes(private_key_pem(key))
        self.ca_file = self.ca_dir / "ca.crt"
        self.database = directory / "store.db"
        self.api_port, self.agent_port = free_port(), free_port()
        self.url = f"https://{HOST}:{self.api_port}"
        self.agent_url = f"https://{HOST}:{self.agent_port}"
        self.log = directory / "serve.log"
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.client: httpx.Client | None = None

    def start(self) -> None:
        token_file = self.directory / "admin.token"
        command = [sys.executable, "-c", "from fleetplane.cli.main import run; run()", "serve",
                   "--database", f"sqlite:///{self.database}",
                   "--listen", f"{HOST}:{self.api_port}",
                   "--tls-cert", str(self.api_cert), "--tls-key", str(self.api_key),
                   "--admin-token-file", str(token_file),
                   "--agent-listen", f"{HOST}:{self.agent_port}", "--ca-dir", str(self.ca_dir),
                   "--fleet", "acme", "--log-level", "warning", *self.extra]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                            cwd=self.directory, start_new_session=True)
        self.client = httpx.Client(
            base_url=self.url, verify=ssl.create_default_context(cafile=str(self.ca_file)),
            timeout=10.0, trust_env=False)
        wait_for(self._ready, READY_TIMEOUT, "fleetplane serve to answer /readyz")
        self.client.headers["Authorization"] = f"Bearer {token_file.read_text().strip()}"

    def _ready(self) -> bool:
        assert self.process is not None and self.client is not None
        if self.process.poll() is not None:
            raise AssertionError(f"fleetplane serve exited early:\n{self.log.read_text()}")
        try:
            return self.client.get("/readyz").status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.client is not None:
            self.client.close()
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
            raise AssertionError("fleetplane serve did not stop on SIGTERM within 20 s") from None

    @property
    def api(self) -> httpx.Client:
        assert self.client is not None, "start() the server first"
        return self.client

    def apply(self, manifests: str) -> dict[str, Any]:
        answer = self.api.post(f"{V1}/apply", content=manifests,
                               headers={"Content-Type": "application/yaml"})
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def bootstrap_token(self, site: str) -> str:
        answer = self.api.post(f"{V1}/sites/{site}/bootstrap-tokens", params={"ttl": "15m"})
        assert answer.status_code in (200, 201), answer.text
        return str(answer.json()["token"])

    def desired_revision(self, site: str) -> int:
        answer = self.api.get(f"{V1}/sitedesiredstates/{site}")
        return int(answer.json()["spec"]["revision"]) if answer.status_code == 200 else 0

    def desired(self, site: str) -> dict[str, Any]:
        answer = self.api.get(f"{V1}/sitedesiredstates/{site}")
        assert answer.status_code == 200, answer.text
        document: dict[str, Any] = answer.json()
        return document

    def site_status(self, site: str) -> dict[str, Any]:
        answer = self.api.get(f"{V1}/sites/{site}")
        assert answer.status_code == 200, answer.text
        status: dict[str, Any] = answer.json().get("status") or {}
        return status

    def telemetry(self, site: str) -> list[dict[str, Any]]:
        """Every interval the server stored for ``site``, read from its database."""
        from sqlalchemy import create_engine

        from fleetplane.control.agent_api.telemetry import stored_intervals

        engine = create_engine(f"sqlite:///{self.database}")
        try:
            return stored_intervals(engine, site)
        finally:
            engine.dispose()


# --- agents, workloads and clients inside the sites ----------------------------------------------

AGENT_HEALTH_PORT = 9464


class SiteAgent:
    """``fleetplane agent`` with the process runtime, running inside its site's namespace."""

    def __init__(self, server: Server, site: str, directory: Path, token: str) -> None:
        self.server, self.site, self.token = server, site, token
        self.data_dir = directory / f"agent-{site}"
        self.log_file = directory / f"agent-{site}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, telemetry_interval: float = 1.0) -> None:
        command = in_site(
            self.site, sys.executable, "-c", "from fleetplane.cli.main import run; run()",
            "agent", "--server", self.server.agent_url, "--site", self.site,
            "--data-dir", str(self.data_dir), "--ca-cert", str(self.server.ca_file),
            "--bootstrap-token", self.token, "--agent-id", "a1", "--runtime", "process",
            "--health-listen", f"127.0.0.1:{AGENT_HEALTH_PORT}",
            "--heartbeat-interval", "1", "--telemetry-interval", str(telemetry_interval))
        with self.log_file.open("ab") as out:
            self.process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        wait_for(lambda: self.get("/healthz") is not None, 60, f"{self.site}'s agent endpoint")

    def get(self, path: str) -> Any:
        if self.process is not None and self.process.poll() is not None:
            raise AssertionError(f"the agent of {self.site} exited:\n{self.log()[-4000:]}")
        return site_get(self.site, f"http://127.0.0.1:{AGENT_HEALTH_PORT}{path}")

    def answer(self, path: str, timeout: float = 30.0) -> Any:
        """The endpoint's answer, retried: a busy machine may let one call time out."""
        deadline = time.monotonic() + timeout
        while (value := self.get(path)) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.site}'s agent did not answer {path} "
                                     f"for {timeout:.0f} s")
            time.sleep(0.2)  # retrying a failed call, not waiting out a race
        return value

    def connected(self) -> bool:
        return bool(self.answer("/healthz")["connected"])

    def revisions(self) -> list[int]:
        return list(self.answer("/v1/revisions"))

    def replicas(self, workload: str | None = None) -> list[dict[str, Any]]:
        return [r for r in self.answer("/v1/replicas")
                if workload is None or r["workload"] == workload]

    def ready(self, workload: str, count: int = 1) -> list[dict[str, Any]]:
        ready = [r for r in self.replicas(workload) if r["state"] == "Ready"]
        return ready if len(ready) >= count else []

    def log(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def telemetry_position(self) -> tuple[int, int]:
        """(last sequence numbered, intervals still buffered) from the agent's local state."""
        with contextlib.closing(sqlite3.connect(self.data_dir / "state.db", timeout=10)) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'telemetry_seq'").fetchone()
            backlog = db.execute("SELECT count(*) FROM telemetry").fetchone()[0]
        return (int(row[0]) if row else 0), int(backlog)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def process_start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot (/proc/PID/stat field 22); None when gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])


_CLIENT = r"""
import http.client, json, os, signal, sys, time
port, status_file = int(sys.argv[1]), sys.argv[2]
counts = {"ok": 0, "failed": 0, "errors": []}
running = True
def stop(*_):
    global running
    running = False
signal.signal(signal.SIGTERM, stop)
def publish():
    with open(status_file + ".tmp", "w") as out:
        json.dump(counts, out)
    os.replace(status_file + ".tmp", status_file)
body = json.dumps({"pixels": [[0, 3, 12, 16, 10, 1, 0, 0] * 8]})
published = 0.0
while running:
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("POST", "/predict", body, {"Content-Type": "application/json"})
        answer = connection.getresponse()
        answer.read()
        connection.close()
        if answer.status == 200:
            counts["ok"] += 1
        else:
            counts["failed"] += 1
            counts["errors"].append(f"HTTP {answer.status}")
    except OSError as error:
        counts["failed"] += 1
        counts["errors"].append(repr(error))
    if time.monotonic() - published > 0.5:
        publish()
        published = time.monotonic()
    time.sleep(0.05)
publish()
"""


class SiteClient:
    """A load client inside ``site`` calling one replica on the site's loopback, continuously."""

    def __init__(self, site: str, port: int, directory: Path) -> None:
        self.status_file = directory / f"client-{site}-{port}.json"
        self.process = subprocess.Popen(
            in_site(site, sys.executable, "-c", _CLIENT, str(port), str(self.status_file)),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)

    def counts(self) -> dict[str, Any]:
        try:
            counts: dict[str, Any] = json.loads(self.status_file.read_text())
        except (OSError, ValueError):
            return {"ok": 0, "failed": 0, "errors": []}
        return counts

    def stop(self) -> dict[str, Any]:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=20)
        return self.counts()
