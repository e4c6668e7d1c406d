"""The agent's main loop: identity, sync, reconcile, heartbeat, telemetry, its own endpoint.

Each concern is its own task and none depends on the control plane being
reachable except the ones that talk to it: the reconcile loop works from the
last-known-good desired state on disk, so workloads keep running and failed
ones restart during a partition, and nothing is stopped because the server
is gone. Sync, heartbeat and telemetry upload retry with back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from fleetplane import __version__
from fleetplane.agent import health
from fleetplane.agent.delivery import WorkloadDelivery
from fleetplane.agent.enrolment import Enroller, EnrolmentError, Identity
from fleetplane.agent.inventory import hardware_inventory
from fleetplane.agent.pools import PoolChecks
from fleetplane.agent.runtimes.base import Runtime
from fleetplane.agent.state import LocalState
from fleetplane.agent.sync import V1, DesiredStateSync, StuckRequest, SyncError
from fleetplane.agent.telemetry import TelemetryBuffer, TelemetryUploadError
from fleetplane.model.desired_state import SiteDesiredState, SiteDesiredStateSpec
from fleetplane.model.infrastructure import WorkloadState

log = logging.getLogger("fleetplane.agent")

RETRY_CAP = 10.0
IDENTITY_CHECK_CAP = 30.0
STARTING_CHECK = 0.2


@dataclass
class AgentConfig:
    server: str
    site: str
    data_dir: Path
    ca_pem: bytes
    bootstrap_token: str | None = None
    agent_id: str = field(default_factory=lambda: default_agent_id())
    runtime: str = "process"
    health_host: str = "127.0.0.1"
    # None: no endpoint (thousands of simulated agents in one process); 0: any free port.
    health_port: int | None = 9464
    heartbeat_interval: float = 5.0
    # Replicas are probed every interval (every 0.2 s while starting); exits are seen then too.
    reconcile_interval: float = 2.0
    telemetry_interval: float = 10.0
    telemetry_limit: int = 100_000
    # pool → shell command; a non-zero exit (or no answer in time) marks the pool failed.
    pool_checks: dict[str, str] = field(default_factory=dict)
    pool_check_interval: float = 5.0


# httpx's default keep-alive expiry (5 s) equals the default heartbeat interval, so most
# heartbeats found their connection closed and paid a new TLS handshake. The server keeps an
# agent's idle connection 75 s: expire ours well above the heartbeat and status intervals but
# before the server would close it under us.
KEEPALIVE_EXPIRY = 60.0


def control_plane_client(context: ssl.SSLContext) -> httpx.AsyncClient:
    """The one mTLS client for heartbeats, the watch, telemetry and artifacts."""
    return httpx.AsyncClient(verify=context, timeout=10.0, trust_env=False,
                             limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY))


def default_agent_id() -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", socket.gethostname().lower()).strip("-")
    return (name or "agent")[:63].strip("-")


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.state = LocalState(config.data_dir)
        self.identity = Identity(config.data_dir, config.site, config.agent_id, config.ca_pem)
        self.enroller = Enroller(config.server, self.identity, config.bootstrap_token)
        self.sync = DesiredStateSync(config.site, self.state, self._applied)
        self.runtime = self._runtime(config.runtime)
        self.telemetry = TelemetryBuffer(self.state, config.site, config.agent_id,
                                         config.telemetry_limit)
        self.connected = False
        self.counters: dict[str, float] = {"heartbeats": 0, "heartbeat_failures": 0,
                                           "rotations": 0, "watch_reconnects": 0}
        self.hardware = hardware_inventory()
        self.pools = PoolChecks(config.pool_checks, config.pool_check_interval,
                                self._wake_reconcile_soon)
        # Why the control plane refuses this agent (e.g. too old), for /healthz and the log.
        self.refused: str | None = None
        self.health_server: asyncio.Server | None = None
        self._client: httpx.AsyncClient | None = None
        self._wake_reconcile = asyncio.Event()
        # Releases and secrets reach real workloads only; simulated ones run nothing.
        self.delivery = None if config.runtime == "simulated" else WorkloadDelivery(
            config.data_dir, config.server, self._wake_reconcile.set)

    def _runtime(self, name: str) -> Runtime:
        if name == "simulated":
            from fleetplane.agent.runtimes.simulated import SimulatedRuntime

            return SimulatedRuntime()
        from fleetplane.agent.runtimes.process import ProcessRuntime

        processes = ProcessRuntime(self.state, self.config.data_dir / "logs",
                                   wake=self._wake_reconcile_soon)
        if name == "slurm":
            from fleetplane.agent.runtimes.slurm import SlurmRuntime

            return SlurmRuntime(self.config.data_dir / "jobs", services=processes)
        return processes

    def _applied(self, _desired: SiteDesiredState) -> None:
        self._wake_reconcile.set()

    def _wake_reconcile_soon(self) -> None:
        self._wake_reconcile.set()

    def failed_pools(self) -> set[str]:
        """Pools marked failed by an operator (persisted) or by their health check now."""
        return self.state.failed_pools() | self.pools.failing

    # --- the client --------------------------------------------------------------

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = control_plane_client(self.identity.ssl_context())
        return self._client

    async def _renew_client(self) -> None:
        old, self._client = self._client, None
        if old is not None:
            await old.aclose()

    # --- loops -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        if self.config.health_port is not None:
            self.health_server = await health.serve(self.config.health_host,
                                                    self.config.health_port, self._handle)
        # Before the first reconcile, so a restart never starts replicas on a failed pool.
        await self.pools.check_all()
        tasks = [asyncio.create_task(coroutine) for coroutine in (
            self._identity_loop(), self._sync_loop(), self._reconcile_loop(),
            self._heartbeat_loop(), self._telemetry_loop(), self.pools.run(),
        )]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self.health_server is not None:
                self.health_server.close()
            if self.delivery is not None:
                await self.delivery.close()
            await self.runtime.close()
            await self._renew_client()
            self.state.close()

    async def _identity_loop(self) -> None:
        failures = 0
        while True:
            try:
                if await self.enroller.ensure():
                    self.counters["rotations"] += 1
                    await self._renew_client()
                failures = 0
            except (httpx.HTTPError, OSError) as error:
                failures += 1
                log.info("control plane unreachable for the certificate (%s)", error)
            except EnrolmentError as error:
                failures += 1
                log.error("%s", error)
            await asyncio.sleep(min(RETRY_CAP, 0.5 * 2 ** failures) if failures
                                else self._until_half_life())

    def _until_half_life(self) -> float:
        """Sleep until the certificate's half-life (bounded, so clock jumps are noticed)."""
        certificate = self.identity.certificate()
        if certificate is None:
            return 0.5
        seconds = (certificate.half_life() - datetime.now(UTC)).total_seconds()
        return min(IDENTITY_CHECK_CAP, max(0.1, seconds))

    async def _sync_loop(self) -> None:
        failures = 0
        while True:
            if self.identity.certificate() is None:
                await asyncio.sleep(0.2)  # waiting for enrolment, which the identity loop does
                continue
            try:
                await self.sync.watch(self.client(), self.config.server.rstrip("/"),
                                      self._watch_alive)
                failures = 0
            except (httpx.HTTPError, OSError, SyncError, ValueError) as error:
                if isinstance(error, StuckRequest):
                    log.warning("%s; opening new connections to the control plane", error)
                    await self._renew_client()
                if self.connected:
                    # A read timeout's message is empty: name the error instead.
                    log.warning("lost the control plane (%s); carrying on from revision %d",
                                str(error) or type(error).__name__, self.sync.revision)
                self.connected = False
                failures += 1
            self.counters["watch_reconnects"] += 1
            await asyncio.sleep(min(RETRY_CAP, 0.2 * 2 ** failures))

    def _watch_alive(self) -> None:
        if not self.connected:
            log.info("connected to the control plane at revision %d", self.sync.revision)
        self.connected = True

    async def _reconcile_loop(self) -> None:
        while True:
            # Cleared before reading the desired state: a revision applied while this pass
            # runs wakes the next pass at once instead of waiting for the next tick.
            self._wake_reconcile.clear()
            desired = self.sync.applied
            if desired is not None:
                try:
                    await self.runtime.reconcile(self._deliverable(desired.spec),
                                                 self.failed_pools())
                except Exception:
                    log.exception("reconcile failed; retrying next tick")
            # A replica that is starting is checked more often, so it is reported (and
            # counted as serving) soon after it is ready.
            starting = any(view.state in ("Starting", "Surging")
                           for view in self.runtime.replicas())
            interval = self.config.reconcile_interval
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake_reconcile.wait(),
                                       min(interval, STARTING_CHECK) if starting else interval)

    def _deliverable(self, spec: SiteDesiredStateSpec) -> SiteDesiredStateSpec:
        """The workloads whose release and secrets are in place (agent/delivery.py)."""
        if self.delivery is None:
            return spec
        client = self.client() if self.identity.certificate() is not None else None
        return self.delivery.prepare(spec, client)

    def _workload_states(self, spec: SiteDesiredStateSpec | None) -> list[WorkloadState]:
        states = self.runtime.workload_states(spec)
        return states if self.delivery is None else self.delivery.annotate(states)

    async def _heartbeat_loop(self) -> None:
        while True:
            if self.identity.certificate() is not None:
                try:
                    await self._heartbeat()
                    self.counters["heartbeats"] += 1
                except AgentRefused as error:
                    self.counters["heartbeat_failures"] += 1
                    if self.refused != str(error):
                        log.error("%s", error)
                    self.refused = str(error)
                except (httpx.HTTPError, OSError, SyncError) as error:
                    self.counters["heartbeat_failures"] += 1
                    log.debug("heartbeat failed: %s", error)
            await asyncio.sleep(self.config.heartbeat_interval)

    def status(self) -> dict[str, Any]:
        desired = self.sync.applied
        certificate = self.identity.certificate()
        return {
            "appliedRevision": self.sync.revision or None,
            "workloads": [s.model_dump(mode="json", by_alias=True, exclude_none=True)
                          for s in self._workload_states(desired.spec if desired else None)],
            "hardware": self.hardware,
            "agentVersion": __version__,
            "certificateExpiry": certificate.not_after.isoformat() if certificate else None,
        }

    async def _heartbeat(self) -> None:
        url = f"{self.config.server.rstrip('/')}{V1}/sites/{self.config.site}/status"
        answer = await self.client().put(url, json={"status": self.status()})
        if answer.status_code == 426:
            raise AgentRefused(
                f"the control plane refuses agent version {__version__}: {_message(answer)}; "
                "workloads keep running from the last-known-good desired state")
        if answer.status_code != 200:
            raise SyncError(f"status write answered {answer.status_code}: {answer.text}")
        self.refused = None

    async def _telemetry_loop(self) -> None:
        # The upload runs beside the collection: during a partition it hangs until its
        # timeout, and awaiting it here stretched every interval by that timeout.
        upload: asyncio.Task[None] | None = None
        try:
            while True:
                await asyncio.sleep(self.config.telemetry_interval)
                try:
                    self.telemetry.record(await self.runtime.collect_telemetry())
                except Exception:
                    log.exception("collecting telemetry failed")
                if self.identity.certificate() is not None and (upload is None or upload.done()):
                    upload = asyncio.create_task(self._upload_telemetry())
        finally:
            if upload is not None:
                upload.cancel()
                await asyncio.gather(upload, return_exceptions=True)

    async def _upload_telemetry(self) -> None:
        try:
            await self.telemetry.upload(self.client(), self.config.server.rstrip("/"))
        except (httpx.HTTPError, OSError, TelemetryUploadError) as error:
            log.debug("telemetry upload deferred: %s", error)

    # --- the agent's own endpoint ------------------------------------------------

    async def _handle(self, method: str, path: str) -> tuple[int, str, bytes]:
        if path == "/healthz":
            return health.json_body(200, {"status": "ok", "connected": self.connected,
                                          "appliedRevision": self.sync.revision,
                                          "agentVersion": __version__,
                                          "refused": self.refused,
                                          "failedPools": sorted(self.failed_pools())})
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4", health.prometheus(self._metrics())
        if path == "/v1/replicas":
            return health.json_body(200, [vars(view) for view in self.runtime.replicas()])
        if path == "/v1/revisions":
            return health.json_body(200, self.sync.applied_history)
        match = re.fullmatch(r"/v1/pools/([^/]+)/(fail|recover)", path)
        if match and method == "POST":
            self.state.set_pool_failed(match.group(1), match.group(2) == "fail")
            self._wake_reconcile.set()
            return health.json_body(200, {"pool": match.group(1),
                                          "failed": match.group(2) == "fail"})
        return health.json_body(404, {"error": f"no route {method} {path}"})

    def _metrics(self) -> list[tuple[str, str, str, dict[str, str], float]]:
        certificate = self.identity.certificate()
        expiry = (certificate.not_after - datetime.now(UTC)).total_seconds() if certificate else 0
        rows: list[tuple[str, str, str, dict[str, str], float]] = [
            ("fleetplane_agent_info", "gauge", "agent version", {"version": __version__}, 1),
            ("fleetplane_agent_connected", "gauge", "1 while the watch is connected", {},
             float(self.connected)),
            ("fleetplane_agent_applied_revision", "gauge", "last applied desired-state revision",
             {}, float(self.sync.revision)),
            ("fleetplane_agent_certificate_expiry_seconds", "gauge",
             "seconds until the client certificate expires", {}, expiry),
            ("fleetplane_agent_telemetry_backlog", "gauge", "intervals waiting for upload", {},
             float(self.state.telemetry_backlog())),
            ("fleetplane_agent_telemetry_dropped_total", "counter",
             "intervals dropped because the buffer was full", {}, float(self.telemetry.dropped)),
            ("fleetplane_agent_uptime_seconds", "gauge", "seconds since start", {},
             time.monotonic() - _STARTED),
        ]
        for name, value in self.counters.items():
            rows.append((f"fleetplane_agent_{name}_total", "counter", name.replace("_", " "), {},
                         value))
        # A surge replica shares its slot's labels; the slot's serving replica speaks for it.
        for view in (v for v in self.runtime.replicas() if v.state != "Surging"):
            rows.append(("fleetplane_agent_replica_restarts_total", "counter",
                         "restarts of a replica", {"workload": view.workload,
                                                   "replica": str(view.index)},
                         float(view.restarts)))
        return rows


_STARTED = time.monotonic()


class AgentRefused(Exception):
    """The control plane answered 426: this agent's version is no longer served."""


def _message(answer: httpx.Response) -> str:
    try:
        return str(answer.json().get("message", answer.text))
    except ValueError:
        return answer.text
