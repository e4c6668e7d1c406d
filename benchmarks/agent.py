"""The site agent: footprint, change → serving, and 2,000 simulated agents on one server.

    python benchmarks/agent.py                                   # defaults: a few minutes
    python benchmarks/agent.py --changes 10 --agents 200 --idle-seconds 10     # short mode
    python benchmarks/agent.py --skip single --agents 2000 --processes 2       # agents only

Everything is real: ``fleetplane serve``'s own code path (human API, agent
port with mTLS, controllers) in a server process, the agent as its own
process (``python -m fleetplane.agent``, the ``fleetplane-agent`` script) with
the ``process`` runtime running the bundled inference workload
(``fleetplane.workloads.inference`` with a digits MLP trained here once).
The only stand-in is the planner: it puts one replica of every Workload on
every site, so a Workload change is a Placement change for every site (the
engine's planning time is ``benchmarks/placement_quality.py``'s business).
The five Workloads are inference workloads fed by one DataSource at the site;
each runs the bundled inference service.

Measured:

1. **Footprint** with 5 workloads ready: the agent process's VmRSS
   (/proc/PID/status; workload processes are separate and excluded) and its
   CPU % of one core over ``--idle-seconds`` (utime+stime from
   /proc/PID/stat), plus start-up (spawn → /healthz answers). Baseline in the
   same run: the same agent started through the full CLI (``fleetplane
   agent``, which imports every command module) on the same data directory
   (it re-adopts the running replicas). Goal line: KubeEdge's edge agent ~70 MB
   and ≤ 1 % of a core.
2. **Change → serving**, ``--changes`` times: a Workload's env is changed
   through the human API (→ new Placement → new SiteDesiredState revision →
   the agent's watch → the replica is replaced); the clock stops when the new
   replica (new pid) answers ``POST /predict`` with 200. p50/p99/max.
   Includes the controller's ``--debounce`` (reported).
3. **Simulated agents**: ``--agents`` real :class:`fleetplane.agent.agent.Agent`
   objects with the ``simulated`` runtime, spread over ``--processes``
   load-generator processes (each with its own SQLite state, TLS client
   certificate, watch, heartbeats and telemetry), against the same server.
   Agents are started at ``--start-rate`` per second so the start-up is not
   a handshake storm; the window is measured once all applied the first
   revision. Certificates are issued with the server's CA key instead of N
   enrolments (enrolment is tested in tests/integration/agent). Reported:
   heartbeats/s sustained vs offered (N / ``--heartbeat-interval``), failures,
   time until every agent applied the first revision, and per change the
   time (p50, p99, all) until the agents applied it, taken from each agent's
   apply callback; CPU of the server and of every load generator.

Timing here never goes into test assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

V1 = "/apis/fleetplane/v1"
FLEET = "bench"
KUBEEDGE_RSS_MIB = 70.0
CPU_GOAL_PERCENT = 1.0
WORKLOADS = 5

SITE = """\
apiVersion: fleetplane/v1
kind: Site
metadata: {{name: {name}}}
spec:
  tier: edge
  region: r{region}
  residencyZone: eu
  nodePools:
    - {{name: cpu, count: 1, cpu: 8, memory: 32Gi, nodeImage: ubuntu}}
  cost:
    opex: {{cpuHour: 0.04/h}}
"""
IMAGE = """\
apiVersion: fleetplane/v1
kind: NodeImage
metadata: {name: ubuntu}
spec:
  os: ubuntu-22.04
  containerRuntime: {name: containerd, version: "1.7"}
  arches: [amd64]
"""
SOURCE = """\
apiVersion: fleetplane/v1
kind: DataSource
metadata: {name: cams}
spec: {site: edge-1, requestRate: 10/s, requestSize: 10KB}
"""
WORKLOAD = """\
apiVersion: fleetplane/v1
kind: Workload
metadata: {{name: {name}}}
spec:
  class: inference
  slo: {{latency: {{p99: 200ms}}}}
  demand: [{{source: cams}}]
  resources: {{cpu: 1, memory: 1Gi}}
  profiles:
    - {{hardware: cpu, serviceTime: {{mean: 2ms, cv: 0.5}}}}
  env: {{CHANGE: "{mark}", FLEETPLANE_MODEL: "{model}"}}
"""


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --------------------------------------------------------------------------- /proc


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def poll(probe: Any, timeout: float, what: str, every: float = 0.01) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)  # polling another process's state


# --------------------------------------------------------------------------- server process


def everywhere(fleet: Any, current: Any) -> Any:
    """Stand-in planner: one replica of each workload on every usable site."""
    from fleetplane.model.placement import (
        Assignment,
        CostBreakdown,
        Placement,
        PlacementSpec,
        SolverInfo,
        WorkloadPlacement,
    )

    usable = sorted(n for n, s in fleet.sites.items() if not (s.spec.cordoned or s.spec.draining))
    placed = [
        WorkloadPlacement(
            workload=name, workload_class=item.spec.class_,
            assignments=[Assignment(site=s, pool="cpu", profile="cpu", replicas=1) for s in usable],
            cost=CostBreakdown(compute=float(len(usable))),
        )
        for name, item in sorted(fleet.workloads.items())
    ]
    spec = PlacementSpec(workloads=placed,
                         cost=CostBreakdown(compute=sum(p.cost.compute for p in placed)),
                         solver=SolverInfo(name="everywhere", version="bench", seed=0))
    return Placement.model_validate(
        {"metadata": {"name": "fleet"}, "spec": spec.model_dump(by_alias=True)})


def run_server(args: argparse.Namespace) -> None:
    from fleetplane.cli.serve import run_control_plane
    from fleetplane.control.controllers import ControllerSettings, build_controllers
    from fleetplane.control.settings import Limits, Listen, Settings

    settings = Settings(
        database_url=args.database, listen=Listen.parse(args.listen),
        admin_token_file=Path(args.token_file), fleet_name=FLEET,
        limits=Limits(max_body_bytes=64 * 1024 * 1024, writes_per_second=0.0),
    )
    controllers = build_controllers(
        ControllerSettings(debounce=args.debounce, heartbeat_timeout=3600.0), planner=everywhere)
    run_control_plane(settings, controllers, agent_listen=Listen.parse(args.agent_listen),
                      ca_dir=Path(args.ca_dir), log_level="warning")


class Server:
    def __init__(self, workdir: Path, debounce: float) -> None:
        self.port, self.agent_port = free_port(), free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.agent_url = f"https://127.0.0.1:{self.agent_port}"
        self.ca_dir = workdir / "ca"
        token_file = workdir / "admin.token"
        log = workdir / "server.log"
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, __file__, "--role", "server",
                 "--database", f"sqlite:///{workdir / 'store.db'}",
                 "--listen", f"127.0.0.1:{self.port}",
                 "--agent-listen", f"127.0.0.1:{self.agent_port}",
                 "--ca-dir", str(self.ca_dir), "--token-file", str(token_file),
                 "--debounce", str(debounce)],
                stdout=out, stderr=subprocess.STDOUT)

        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited:\n{log.read_text()}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        poll(ready, 120, "the server", every=0.2)
        self.token = token_file.read_text().strip()
        self.http = httpx.Client(base_url=self.url, timeout=600,
                                 headers={"Authorization": f"Bearer {self.token}"})

    def apply(self, text: str) -> None:
        answer = self.http.post(f"{V1}/apply", content=text,
                                headers={"Content-Type": "application/yaml"})
        answer.raise_for_status()

    def bootstrap_token(self, site: str) -> str:
        answer = self.http.post(f"{V1}/sites/{site}/bootstrap-tokens", params={"ttl": "15m"})
        answer.raise_for_status()
        return str(answer.json()["token"])

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


# --------------------------------------------------------------------------- one real agent


class AgentProcess:
    def __init__(self, server: Server, data_dir: Path, command: list[str], token: str | None
                 ) -> None:
        self.health = free_port()
        argv = [*command, "--server", server.agent_url, "--site", "edge-1",
                "--data-dir", str(data_dir), "--ca-cert", str(server.ca_dir / "ca.crt"),
                "--agent-id", "a1", "--health-listen", f"127.0.0.1:{self.health}",
                "--log-level", "warning"]
        if token:
            argv += ["--bootstrap-token", token]
        started = time.perf_counter()
        with (data_dir.parent / "agent.log").open("ab") as out:
            self.process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        poll(lambda: self.get("/healthz"), 60, "the agent's /healthz")
        self.startup = time.perf_counter() - started

    def get(self, path: str) -> Any:
        try:
            answer = httpx.get(f"http://127.0.0.1:{self.health}{path}", timeout=5,
                               trust_env=False)
        except httpx.HTTPError:
            return None
        return answer.json()

    def replicas(self) -> list[dict[str, Any]]:
        return self.get("/v1/replicas") or []

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()


def ready_replicas(agent: AgentProcess) -> list[dict[str, Any]]:
    ready = [r for r in agent.replicas() if r["state"] == "Ready"]
    return ready if len(ready) >= WORKLOADS else []


def footprint(agent: AgentProcess, seconds: float) -> dict[str, float]:
    poll(lambda: ready_replicas(agent), 180, f"{WORKLOADS} ready replicas", every=0.2)
    time.sleep(2.0)  # let start-up work (first telemetry, status) pass before sampling idle
    pid = agent.process.pid
    cpu_before, wall_before = cpu_seconds(pid), time.perf_counter()
    peak = rss_mib(pid)
    end = wall_before + seconds
    while time.perf_counter() < end:
        time.sleep(0.5)  # sampling RSS
        peak = max(peak, rss_mib(pid))
    cpu = (cpu_seconds(pid) - cpu_before) / (time.perf_counter() - wall_before)
    return {"rss_mib": rss_mib(pid), "rss_peak_mib": peak, "cpu_percent": 100 * cpu,
            "startup_s": agent.startup}


def predict(port: int) -> bool:
    try:
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json={"pixels": [[0] * 64]},
                            timeout=5, trust_env=False)
    except httpx.HTTPError:
        return False
    return answer.status_code == 200


def change_to_serving(server: Server, agent: AgentProcess, model: Path, changes: int
                      ) -> list[float]:
    seconds = []
    for number in range(changes):
        # A surge replacement lists the old replica and its successor until the switch.
        def only_replica() -> dict[str, Any] | None:
            found = [r for r in agent.replicas() if r["workload"] == "w0"]
            return found[0] if len(found) == 1 else None

        old = poll(only_replica, 60, "w0 back to one replica")
        mark = f"change-{number}-{secrets.token_hex(3)}"
        started = time.perf_counter()
        server.apply(WORKLOAD.format(name="w0", mark=mark, model=model))

        # Serving means what a client of the site sees: the agent lists the new replica as
        # w0's Ready one (a surge replica is listed as Surging until it takes over) and it
        # answers /predict.
        def new_replica(old_pid: int = old["pid"]) -> dict[str, Any] | None:
            found = [r for r in agent.replicas()
                     if r["workload"] == "w0" and r["state"] == "Ready"
                     and r["pid"] not in (None, old_pid)]
            return found[0] if found else None

        replica = poll(new_replica, 60, f"w0 replaced after {mark}")
        poll(lambda port=replica["port"]: predict(port), 60, f"w0 serving after {mark}")
        seconds.append(time.perf_counter() - started)
        # ... and it is the new version: the change's mark is in the replica's environment.
        environ = Path(f"/proc/{replica['pid']}/environ").read_bytes().split(b"\0")
        if f"CHANGE={mark}".encode() not in environ:
            raise RuntimeError(f"w0's serving replica (pid {replica['pid']}) is not {mark}")
        poll(lambda: ready_replicas(agent), 60, "all replicas ready again")
    return seconds


def stop_workloads(data_dir: Path) -> None:
    import sqlite3

    path = data_dir / "state.db"
    if not path.exists():
        return
    database = sqlite3.connect(path)
    rows = []
    for table in ("replicas", "surge_replicas", "draining_replicas"):
        with contextlib.suppress(sqlite3.OperationalError):  # a table an older agent lacks
            rows += database.execute(f"SELECT pid FROM {table}").fetchall()
    for (pid,) in rows:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue


def import_seconds(code: str, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        best = min(best, time.perf_counter() - started)
    return best


def base_fleet(server: Server, workdir: Path) -> Path:
    """The real site edge-1, its data source and five workloads; the model they load."""
    from fleetplane.workloads.mlp import train

    model_path = workdir / "digits.npz"
    train()[0].save(model_path)
    server.apply("---\n".join([IMAGE, SITE.format(name="edge-1", region=0), SOURCE, *(
        WORKLOAD.format(name=f"w{i}", mark="initial", model=model_path)
        for i in range(WORKLOADS))]))
    return model_path


def single_site(server: Server, workdir: Path, model_path: Path, args: argparse.Namespace
                ) -> dict[str, Any]:
    data_dir = workdir / "edge-1"
    result: dict[str, Any] = {
        "import_full_cli_s": import_seconds("import fleetplane.cli.main"),
        "import_lean_s": import_seconds(
            "import fleetplane.agent.command, fleetplane.agent.agent, "
            "fleetplane.agent.runtimes.process"),
    }
    running: list[AgentProcess] = []
    try:
        # Baseline first: it enrols and starts the workloads; the lean agent re-adopts them.
        running.append(AgentProcess(server, data_dir, ["fleetplane", "agent"],
                                    server.bootstrap_token("edge-1")))
        result["full_cli"] = footprint(running[-1], args.idle_seconds)
        running.pop().stop()
        running.append(AgentProcess(server, data_dir, [sys.executable, "-m", "fleetplane.agent"],
                                    None))
        result["lean"] = footprint(running[-1], args.idle_seconds)
        result["change_seconds"] = change_to_serving(server, running[-1], model_path,
                                                     args.changes)
    finally:
        for agent in running:
            agent.stop()
        stop_workloads(data_dir)
    return result


# --------------------------------------------------------------------------- simulated agents


def issue_identities(ca_dir: Path, root: Path, sites: list[str]) -> None:
    """What enrolment would leave in each data directory, signed with the server's CA."""
    from fleetplane.security import CertificateAuthority, SpiffeId, build_csr, generate_private_key
    from fleetplane.security.ca import certificate_pem
    from fleetplane.security.keys import private_key_pem

    ca = CertificateAuthority.load(ca_dir)
    now = datetime.now(UTC)
    for name in sites:
        key = generate_private_key()
        certificate = ca.issue_agent_certificate(
            build_csr(key, SpiffeId(FLEET, name, "a1")), site=name, agent_id="a1", now=now)
        directory = root / name
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "identity.pem").write_bytes(certificate_pem(certificate)
                                                 + private_key_pem(key))
        (directory / "identity.json").write_text(json.dumps({
            "issuedAt": now.isoformat(), "site": name, "agentId": "a1",
            "notAfter": certificate.not_valid_after_utc.isoformat()}))


def sim_site(index: int) -> str:
    return f"s{index:05d}"


async def loop_lag(lags: list[float], stop: asyncio.Event) -> None:
    """How late a 0.1 s sleep wakes: whether the load generator itself was saturated."""
    while not stop.is_set():
        before = time.perf_counter()
        await asyncio.sleep(0.1)
        lags.append(time.perf_counter() - before - 0.1)


def watch_marks(agent: Any, seen: dict[str, list[float]]) -> None:
    """Record when the agent applies each w0 CHANGE mark (wall clock, shared by processes).

    Hooked on the agent's own applied-callback instead of polling every agent's
    state: a poll over 1,000 agents every few ms is load-generator work, and it
    would only see the change late by the polling period.
    """
    applied = agent.sync.on_applied

    def on_applied(desired: Any) -> None:
        for workload in desired.spec.workloads:
            if workload.workload == "w0":
                seen.setdefault(workload.env.get("CHANGE", ""), []).append(time.time())
        applied(desired)

    agent.sync.on_applied = on_applied


async def command(expected: str) -> None:
    """Wait for the coordinating process to say ``expected`` on stdin."""
    line = await asyncio.to_thread(sys.stdin.readline)
    if line.strip() != expected:
        raise RuntimeError(f"load generator expected {expected!r} on stdin, got {line!r}")


def say(event: dict[str, Any]) -> None:
    print(json.dumps(event), flush=True)


async def simulated_main(args: argparse.Namespace) -> None:
    """One load-generator process: agents ``--first`` … ``--first + --agents - 1``.

    Talks to the coordinator over stdin/stdout: prints ``connected`` once its
    agents applied the first revision, measures between the ``start`` and
    ``stop`` lines it is sent, then prints its result.
    """
    from fleetplane.agent.agent import Agent, AgentConfig

    ca_pem = Path(args.ca_file).read_bytes()
    sites = [sim_site(args.first + i) for i in range(args.agents)]
    agents = [Agent(AgentConfig(
        server=args.agent_url, site=site, data_dir=Path(args.data_root) / site,
        ca_pem=ca_pem, agent_id="a1", runtime="simulated", health_port=None,
        heartbeat_interval=args.heartbeat_interval, reconcile_interval=5.0,
        telemetry_interval=args.telemetry_interval)) for site in sites]
    seen: dict[str, list[float]] = {}
    for agent in agents:
        watch_marks(agent, seen)
    stop = asyncio.Event()
    started = time.perf_counter()
    lags: list[float] = []
    tasks = [asyncio.create_task(loop_lag(lags, stop))]
    # Staggered: N agents' TLS handshakes and first status writes at once is a storm of
    # its own, not the steady state this measures.
    for number, agent in enumerate(agents):
        await asyncio.sleep(max(0.0, started + number / args.start_rate - time.perf_counter()))
        tasks.append(asyncio.create_task(agent.run(stop)))
    connect_deadline = started + args.connect_timeout
    while (any(agent.sync.revision == 0 for agent in agents)
           and time.perf_counter() < connect_deadline):
        await asyncio.sleep(0.1)
    say({"event": "connected", "connected_s": time.perf_counter() - started,
         "applied_first": sum(agent.sync.revision > 0 for agent in agents)})

    def counters() -> tuple[float, float]:
        return (sum(a.counters["heartbeats"] for a in agents),
                sum(a.counters["heartbeat_failures"] for a in agents))

    await command("start")
    ok_before, failed_before = counters()
    window_start, cpu_before = time.perf_counter(), cpu_seconds(os.getpid())
    lags.clear()
    say({"event": "started"})
    await command("window")
    window = time.perf_counter() - window_start
    ok_after, failed_after = counters()
    cpu = (cpu_seconds(os.getpid()) - cpu_before) / window
    lag_p50, lag_p99 = quantile(lags, 0.5), quantile(lags, 0.99)
    await command("stop")  # after --settle: the last change's arrivals are still recorded
    say({"event": "result", "agents": args.agents, "heartbeats": ok_after - ok_before,
         "heartbeat_failures": failed_after - failed_before, "window_s": window,
         "cpu_percent": 100 * cpu, "rss_mib": rss_mib(os.getpid()), "marks": seen,
         "loop_lag_p50_ms": 1000 * lag_p50, "loop_lag_p99_ms": 1000 * lag_p99})
    # Reported before the agents stop: with 1,000 agents in a process some shutdowns
    # did not finish, and the figures must not depend on it (the coordinator kills us).
    stop.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)


class LoadGenerator:
    """One ``--role simulated`` process and its stdin/stdout protocol."""

    def __init__(self, argv: list[str], first: int, count: int) -> None:
        self.count = count
        self.process = subprocess.Popen(
            [*argv, "--first", str(first), "--agents", str(count)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def receive(self, event: str) -> dict[str, Any]:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"load generator {self.process.pid} exited "
                               f"({self.process.wait()}) before {event!r}")
        answer: dict[str, Any] = json.loads(line)
        if answer.get("event") != event:
            raise RuntimeError(f"load generator said {answer.get('event')!r}, not {event!r}")
        return answer

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def slices(total: int, parts: int) -> list[tuple[int, int]]:
    """(first index, count) for each of ``parts`` near-equal slices of ``total`` agents."""
    bounds = [total * part // parts for part in range(parts + 1)]
    return [(bounds[p], bounds[p + 1] - bounds[p]) for p in range(parts)
            if bounds[p + 1] > bounds[p]]


def reach_of(applied_at: float, times: list[float], agents: int) -> dict[str, float]:
    delays = [t - applied_at for t in times]
    return {"p50": quantile(delays, 0.5), "p99": quantile(delays, 0.99),
            "all": max(delays) if len(delays) >= agents else float("inf"),
            "missing": agents - len(delays)}


def simulated(server: Server, workdir: Path, model_path: Path, args: argparse.Namespace
              ) -> dict[str, Any]:
    sites = [sim_site(i) for i in range(args.agents)]
    started = time.perf_counter()
    server.apply("---\n".join(SITE.format(name=n, region=i % 20) for i, n in enumerate(sites)))
    root = workdir / "sim"
    issue_identities(server.ca_dir, root, sites)
    setup = time.perf_counter() - started
    parts = slices(args.agents, args.processes)
    argv = [sys.executable, __file__, "--role", "simulated",
            "--agent-url", server.agent_url, "--ca-file", str(server.ca_dir / "ca.crt"),
            "--data-root", str(root), "--connect-timeout", str(args.connect_timeout),
            "--start-rate", str(args.start_rate / len(parts)),
            "--heartbeat-interval", str(args.heartbeat_interval),
            "--telemetry-interval", str(args.telemetry_interval)]
    loads = [LoadGenerator(argv, first, count) for first, count in parts]
    try:
        return drive(server, loads, model_path, args) | {"setup_s": setup}
    finally:
        for load in loads:
            load.kill()


def drive(server: Server, loads: list[LoadGenerator], model_path: Path,
          args: argparse.Namespace) -> dict[str, Any]:
    """Connect phase, then the measured window with ``--sim-changes`` changes in it."""
    connected = [load.receive("connected") for load in loads]
    for load in loads:
        load.send("start")
    for load in loads:
        load.receive("started")
    server_cpu, window_start = cpu_seconds(server.process.pid), time.perf_counter()
    peak = rss_mib(server.process.pid)
    marks: dict[str, float] = {}
    gap = args.duration / (args.sim_changes + 1)
    for number in range(args.sim_changes + 1):
        end = window_start + gap * (number + 1)
        while time.perf_counter() < end:
            peak = max(peak, rss_mib(server.process.pid))
            time.sleep(min(0.5, max(0.0, end - time.perf_counter())))  # sampling RSS
        if number < args.sim_changes:
            mark = f"sim-{number}-{secrets.token_hex(3)}"
            marks[mark] = time.time()
            server.apply(WORKLOAD.format(name="w0", mark=mark, model=model_path))
    server_cpu = (cpu_seconds(server.process.pid) - server_cpu) / (
        time.perf_counter() - window_start)
    load_average = os.getloadavg()
    for load in loads:
        load.send("window")
    # A change made near the window's end needs time to reach every agent too.
    time.sleep(args.settle)  # the agents keep running; their apply callbacks record arrivals
    for load in loads:
        load.send("stop")
    results = [load.receive("result") for load in loads]
    window = max(r["window_s"] for r in results)
    return {
        "agents": args.agents, "processes": len(loads),
        "connected_s": max(c["connected_s"] for c in connected),
        "applied_first": sum(c["applied_first"] for c in connected),
        "heartbeats_per_s": sum(r["heartbeats"] / r["window_s"] for r in results),
        "offered_per_s": args.agents / args.heartbeat_interval,
        "heartbeat_failures": sum(r["heartbeat_failures"] for r in results), "window_s": window,
        "reach": [reach_of(at, [t for r in results for t in r["marks"].get(mark, [])],
                           args.agents) for mark, at in marks.items()],
        "agents_cpu_percent": [r["cpu_percent"] for r in results],
        "agents_rss_mib": [r["rss_mib"] for r in results],
        "loop_lag_p50_ms": max(r["loop_lag_p50_ms"] for r in results),
        "loop_lag_p99_ms": max(r["loop_lag_p99_ms"] for r in results),
        "server_cpu_percent": 100 * server_cpu, "server_rss_peak_mib": peak,
        "load_average": load_average,
    }


# --------------------------------------------------------------------------- report


def report(one: dict[str, Any] | None, many: dict[str, Any] | None,
           args: argparse.Namespace) -> list[str]:
    load = os.getloadavg()
    lines = [f"machine: {os.cpu_count()} cores, load average {load[0]:.1f} / {load[1]:.1f} / "
             f"{load[2]:.1f} at the end (other work on the machine inflates the times)"]
    if one is not None:
        lines += ["agent footprint, 5 inference workloads ready, idle "
                  f"{args.idle_seconds:.0f} s (agent process only)",
                  f"  {'entry point':<34}{'RSS MiB':>9}{'peak':>8}{'CPU %':>8}{'start s':>9}"]
        for key, label in (("full_cli", "fleetplane agent (full CLI)"),
                           ("lean", "python -m fleetplane.agent")):
            row = one[key]
            lines.append(f"  {label:<34}{row['rss_mib']:>9.1f}{row['rss_peak_mib']:>8.1f}"
                         f"{row['cpu_percent']:>8.2f}{row['startup_s']:>9.2f}")
        lines.append(f"  import only: full CLI {one['import_full_cli_s']:.2f} s, agent modules "
                     f"{one['import_lean_s']:.2f} s (python start-up included)")
        changes = one["change_seconds"]
        lines += [f"placement change → workload serving on the site ({len(changes)} changes, "
                  f"debounce {args.debounce} s)",
                  f"  p50 {quantile(changes, 0.5):.3f} s  p99 {quantile(changes, 0.99):.3f} s  "
                  f"max {max(changes):.3f} s"]
    if many is not None:
        cpus = " + ".join(f"{c:.0f}" for c in many["agents_cpu_percent"])
        rsses = " + ".join(f"{r:.0f}" for r in many["agents_rss_mib"])
        lines += [f"{many['agents']} simulated agents (real Agent objects, "
                  f"{many['processes']} load-generator processes) against one server",
                  f"  {many['applied_first']} of {many['agents']} applied the first revision "
                  f"after {many['connected_s']:.1f} s (starts staggered at {args.start_rate:g}/s; "
                  f"setup {many['setup_s']:.1f} s)",
                  f"  heartbeats {many['heartbeats_per_s']:.0f}/s sustained of "
                  f"{many['offered_per_s']:.0f}/s offered over {many['window_s']:.0f} s, "
                  f"{many['heartbeat_failures']:.0f} failed",
                  f"  server CPU {many['server_cpu_percent']:.0f} % of a core, RSS peak "
                  f"{many['server_rss_peak_mib']:.0f} MiB; load generators' CPU {cpus} % of a "
                  f"core, RSS {rsses} MiB, event-loop lag p50 {many['loop_lag_p50_ms']:.0f} ms "
                  f"p99 {many['loop_lag_p99_ms']:.0f} ms (worst process)",
                  "  load average during the window "
                  + " / ".join(f"{x:.1f}" for x in many["load_average"])]
        for number, item in enumerate(many["reach"]):
            lines.append(f"  change {number}: agents applied it after p50 {item['p50']:.2f} s, "
                         f"p99 {item['p99']:.2f} s, all after {item['all']:.2f} s"
                         + (f" ({item['missing']:.0f} never)" if item["missing"] else ""))
    if one is not None:
        lean, full = one["lean"], one["full_cli"]
        lines.append(
            f"agent: {lean['rss_mib']:.1f} MiB RSS and {lean['cpu_percent']:.2f} % CPU idle with 5 "
            f"workloads vs {full['rss_mib']:.1f} MiB / {full['cpu_percent']:.2f} % through the "
            f"full CLI (goal ≤ {KUBEEDGE_RSS_MIB:.0f} MiB like KubeEdge's edge agent, "
            f"≤ {CPU_GOAL_PERCENT:.0f} %); change → serving p50 "
            f"{quantile(one['change_seconds'], 0.5):.2f} s, p99 "
            f"{quantile(one['change_seconds'], 0.99):.2f} s")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", default="main", choices=["main", "server", "simulated"])
    parser.add_argument("--changes", type=int, default=50, help="placement changes timed")
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    parser.add_argument("--agents", type=int, default=2000, help="simulated agents")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds the simulated agents run after connecting")
    parser.add_argument("--sim-changes", type=int, default=3)
    parser.add_argument("--connect-timeout", type=float, default=300.0,
                        help="seconds the simulated agents get to apply the first revision")
    # Longer than a real agent's 5 s / 10 s: one process drives all agents on a 2-core
    # machine, and the load generator must not be what saturates.
    parser.add_argument("--heartbeat-interval", type=float, default=10.0,
                        help="simulated agents' seconds between status writes")
    parser.add_argument("--telemetry-interval", type=float, default=30.0)
    parser.add_argument("--processes", type=int, default=2,
                        help="load-generator processes the simulated agents are spread over")
    parser.add_argument("--settle", type=float, default=60.0,
                        help="seconds after the window that changes may still take to arrive")
    parser.add_argument("--start-rate", type=float, default=50.0,
                        help="simulated agents started per second (all processes together)")
    parser.add_argument("--debounce", type=float, default=0.05)
    parser.add_argument("--skip", choices=["single", "simulated"], action="append", default=[])
    # Internal: the server and simulated-agent processes.
    for name in ("--database", "--listen", "--agent-listen", "--ca-dir", "--token-file",
                 "--agent-url", "--ca-file", "--data-root"):
        parser.add_argument(name, help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "server":
        run_server(args)
        return
    if args.role == "simulated":
        asyncio.run(simulated_main(args))
        return
    workdir = Path(tempfile.mkdtemp(prefix="fp-agent-bench-"))
    server = Server(workdir, args.debounce)
    try:
        model_path = base_fleet(server, workdir)
        one = None if "single" in args.skip else single_site(server, workdir, model_path, args)
        many = None if "simulated" in args.skip else simulated(server, workdir, model_path, args)
    except BaseException:
        print(f"failed; logs kept in {workdir}", file=sys.stderr)
        raise
    finally:
        server.stop()
    shutil.rmtree(workdir, ignore_errors=True)
    print("\n".join(report(one, many, args)))


if __name__ == "__main__":
    main()
