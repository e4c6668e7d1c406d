"""Each replica a real local process, checked over HTTP, restarted with back-off.

Replicas run in their own session (``start_new_session``) so they outlive
the agent: an agent that exits, crashes or is killed leaves its workloads
serving, and the next agent re-adopts them from the local state by pid
*and* process start time (a pid alone may have been reused). Stopping is
graceful: SIGTERM to the replica's process group, SIGKILL after the grace
period. Memory limits: a memory cgroup per replica where the host allows it (the
kernel OOM-kills a replica over its limit and the agent reports
``OOMKilled``), else ``prlimit(RLIMIT_DATA)`` (see :mod:`.limits`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fleetplane.agent.runtimes.base import ReplicaView, Runtime, Target, targets
from fleetplane.agent.runtimes.limits import MemoryCgroups, limit_with_rlimit
from fleetplane.agent.state import LocalState, ReplicaRecord
from fleetplane.model.desired_state import SiteDesiredStateSpec

log = logging.getLogger("fleetplane.agent")

DEFAULT_ENTRYPOINT = "fleetplane.workloads.inference"
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
# A replica ready this long has recovered: its next failure starts the back-off again.
HEALTHY_RESET = 10.0
# A live replica is hung after this many failed liveness checks in a row spanning at
# least LIVENESS_WINDOW seconds (checks run every 0.2 s while starting, else every second:
# a count alone would kill a slow starter in 0.6 s on a loaded host).
LIVENESS_FAILURES = 3
LIVENESS_WINDOW = 5.0
# A replica that has never answered /livez gets this long before it counts as hung.
STARTUP_TIMEOUT = 60.0
# A replacement (surge) replica not ready this long is given up; the old one keeps serving.
SURGE_READY_TIMEOUT = 300.0
# Between taking a replaced replica out of /v1/replicas and SIGTERM: a client that looked
# it up just before still reaches it. The drain (and the stop after it) runs beside the
# reconcile loop, not in it: a change arriving meanwhile is acted on at once.
DRAIN_PERIOD = 2.0
# A replica just started is asked /readyz this often (only it, not every replica) until it
# answers, and the reconcile loop is woken then: it serves (and a replacement takes over)
# within this period of being ready instead of at the next 0.2 s check of every replica.
FAST_READY_PROBE = 0.05
# ... for at most this long; after that the reconcile loop's own checks carry on.
FAST_READY_WINDOW = 60.0


# The state of a replacement starting beside the replica it replaces (not yet serving).
SURGING = "Surging"


@dataclass
class Replica:
    workload: str
    index: int
    pool: str
    spec_hash: str
    port: int
    pid: int
    start_time: int
    popen: subprocess.Popen[bytes] | None = None
    ready: bool = False
    ready_since: float | None = None
    liveness_failures: int = 0
    restarts: int = 0
    watched_since: float = field(default_factory=time.monotonic)
    live_once: bool = False
    failing_since: float | None = None
    stats: dict[str, Any] | None = None


@dataclass
class Backoff:
    failures: int = 0
    not_before: float = 0.0
    restarts: int = 0

    def failed(self, now: float) -> None:
        self.not_before = now + min(BACKOFF_CAP, BACKOFF_BASE * 2 ** self.failures)
        self.failures += 1
        self.restarts += 1


@dataclass
class ProcessRuntime(Runtime):
    state: LocalState
    log_dir: Path
    grace_period: float = 5.0
    check_timeout: float = 1.0
    surge_ready_timeout: float = SURGE_READY_TIMEOUT
    drain_period: float = DRAIN_PERIOD
    name: str = "process"
    _replicas: dict[tuple[str, int], Replica] = field(default_factory=dict)
    # The replacement being brought up beside a serving replica whose spec changed.
    _surge: dict[tuple[str, int], Replica] = field(default_factory=dict)
    _backoff: dict[tuple[str, int], Backoff] = field(default_factory=dict)
    _client: httpx.AsyncClient | None = None
    # Why each replica last ended, by (workload, index), for status and /v1/replicas.
    _last_exit: dict[tuple[str, int], str] = field(default_factory=dict)
    cgroups: MemoryCgroups | None = None
    # Called when a replica just started answers /readyz (the agent wakes its reconcile loop).
    wake: Callable[[], None] | None = None
    # Replaced replicas draining, and then being stopped, by process (pid, start time).
    _draining: dict[tuple[int, int], asyncio.Task[None]] = field(default_factory=dict)
    # Replaced replicas a previous agent left draining: stopped by the first reconcile pass.
    _left_draining: list[Replica] = field(default_factory=list)
    _ready_watches: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.cgroups = MemoryCgroups.find()
        for surge, adopted in ((False, self._replicas), (True, self._surge)):
            for record in self.state.replicas(surge):
                if process_alive(record.pid, record.start_time):
                    adopted[(record.workload, record.index)] = Replica(
                        record.workload, record.index, record.pool, record.spec_hash,
                        record.port, record.pid, record.start_time,
                    )
                    log.info("re-adopted %s/%d (pid %d)", record.workload, record.index,
                             record.pid)
                else:
                    self.state.forget_replica(record.workload, record.index, surge)
        for record in self.state.draining():
            if process_alive(record.pid, record.start_time):
                self._left_draining.append(Replica(
                    record.workload, record.index, record.pool, record.spec_hash,
                    record.port, record.pid, record.start_time))
            else:
                self.state.forget_draining(record.pid, record.start_time)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.check_timeout, trust_env=False)
        return self._client

    # --- reconcile ---------------------------------------------------------------

    async def reconcile(self, desired: SiteDesiredStateSpec, failed_pools: set[str]) -> None:
        wanted = {(t.workload, t.index): t for t in targets(desired, failed_pools)}
        while self._left_draining:  # replaced before the agent restarted: stop them now
            self._drain(self._left_draining.pop(), delay=0.0)
        # A slot no longer wanted (workload removed, scaled down) is no longer reported:
        # its back-off record listed it as BackOff forever.
        for key in [key for key in {*self._backoff, *self._last_exit} if key not in wanted]:
            self._backoff.pop(key, None)
            self._last_exit.pop(key, None)
        for key, replica in list(self._replicas.items()):
            target = wanted.get(key)
            if target is None or (target.spec_hash != replica.spec_hash
                                  and not self._surges(replica, target)):
                self._retire(replica)
        for key, surge in list(self._surge.items()):
            target = wanted.get(key)
            if target is None or target.spec_hash != surge.spec_hash:
                self._retire(surge)  # superseded before it was ready
            elif key not in self._replicas:
                self._promote(surge)  # the replica it was to replace is gone: it is the one
        await asyncio.gather(*(self._check(r) for r in list(self._replicas.values())),
                             *(self._check(r) for r in list(self._surge.values())))
        for surge in [r for r in self._surge.values() if r.ready]:
            self._replace(surge)
        now = time.monotonic()
        # At most one surge replica per workload at a time: +1 process, not +replicas.
        surging = {workload for workload, _ in self._surge}
        for key, target in wanted.items():
            current = self._replicas.get(key)
            if current is None and key in self._surge:
                self._promote(self._surge[key])  # the replica it was to replace just ended
                continue
            if current is not None and (current.spec_hash == target.spec_hash
                                        or target.workload in surging):
                continue
            backoff = self._backoff.setdefault(key, Backoff())
            if now < backoff.not_before:
                continue
            self._start(target, backoff.restarts, surge=current is not None)
            if current is not None:
                surging.add(target.workload)

    @staticmethod
    def _surges(replica: Replica, target: Target) -> bool:
        """Replace ``replica`` by starting its successor first (it keeps serving meanwhile)?

        Only a ready replica on the pool it should stay on: a replica that does not serve
        has nothing to protect, and one on a failed pool is moved off it at once.
        """
        return replica.ready and replica.pool == target.pool

    def _promote(self, surge: Replica) -> None:
        key = (surge.workload, surge.index)
        del self._surge[key]
        self.state.forget_replica(surge.workload, surge.index, surge=True)
        self._replicas[key] = surge
        self.state.save_replica(ReplicaRecord(surge.workload, surge.index, surge.pid,
                                              surge.start_time, surge.port, surge.pool,
                                              surge.spec_hash))

    def _replace(self, surge: Replica) -> None:
        """The replacement is ready: it takes the slot, the old replica drains and stops."""
        old = self._replicas.get((surge.workload, surge.index))
        self._promote(surge)
        if old is None:
            return  # it ended during this pass's checks
        self._last_exit.pop((surge.workload, surge.index), None)
        log.info("%s/%d replaced: pid %d is ready, pid %d drains and stops",
                 surge.workload, surge.index, surge.pid, old.pid)
        self._drain(old, self.drain_period)

    def _retire(self, replica: Replica) -> None:
        """Give up ``replica``'s slot now and stop it beside the reconcile loop.

        A removed workload's replica, or one changed before it served: stopping it inside
        the loop held every other change (and the slot's successor) for up to its grace
        period. Recorded as draining before its slot record goes, so an agent killed in
        between leaves it to the next agent to stop rather than orphaned.
        """
        self._drain(replica, delay=0.0)
        self._vacate(replica)

    def _drain(self, old: Replica, delay: float) -> None:
        """Stop ``old`` (no longer listed) after ``delay``, beside the reconcile loop.

        Recorded while it drains: an agent stopped or killed meanwhile leaves a successor
        that stops it (:meth:`__post_init__`).
        """
        key = (old.pid, old.start_time)
        if key in self._draining:
            return
        self.state.save_draining(ReplicaRecord(old.workload, old.index, old.pid,
                                               old.start_time, old.port, old.pool,
                                               old.spec_hash))

        async def drain() -> None:
            await asyncio.sleep(delay)  # late clients that looked it up still reach it
            await self._stop(old)
            self.state.forget_draining(old.pid, old.start_time)
            self._draining.pop(key, None)

        self._draining[key] = asyncio.create_task(drain())

    async def _check(self, replica: Replica) -> None:
        key = (replica.workload, replica.index)
        surge = self._surge.get(key) is replica
        # A failed replacement is reported on the slot whose old replica keeps serving.
        prefix = "replacement did not become ready: " if surge else ""
        if surge and time.monotonic() - replica.watched_since >= self.surge_ready_timeout \
                and not replica.ready:
            await self._stop(replica, grace=0.0)
            self._last_exit[key] = (f"{prefix}not ready after {self.surge_ready_timeout:g} s; "
                                    "the previous replica keeps serving")
            self._backoff.setdefault(key, Backoff()).failed(time.monotonic())
            return
        if not self._alive(replica):
            reason = prefix + self._exit_reason(replica)
            self._last_exit[key] = reason
            log.warning("%s/%d (pid %d) ended: %s; restarting with back-off",
                        replica.workload, replica.index, replica.pid, reason)
            self._forget(replica)
            self._backoff.setdefault(key, Backoff()).failed(time.monotonic())
            return
        ready = await self._probe(replica, "/readyz")
        # A replica that answers readiness is live: /livez is asked only when it does not
        # (one request per replica per check instead of two, most of an idle agent's CPU).
        live = ready or await self._probe(replica, "/livez")
        if self._hung(replica, live, time.monotonic()):
            log.warning("%s/%d (pid %d) failed %d liveness checks in a row; killing it",
                        replica.workload, replica.index, replica.pid,
                        replica.liveness_failures)
            await self._stop(replica, grace=0.0)
            self._last_exit[key] = prefix + "hung: killed after failing its liveness checks"
            self._backoff.setdefault(key, Backoff()).failed(time.monotonic())
            return
        replica.ready = ready
        now = time.monotonic()
        if replica.ready:
            replica.ready_since = replica.ready_since or now
            if now - replica.ready_since >= HEALTHY_RESET:
                self._backoff.pop(key, None)
        else:
            replica.ready_since = None

    @staticmethod
    def _hung(replica: Replica, live: bool, now: float) -> bool:
        if live:
            replica.live_once, replica.liveness_failures, replica.failing_since = True, 0, None
            return False
        replica.liveness_failures += 1
        replica.failing_since = replica.failing_since or now
        if not replica.live_once:
            return now - replica.watched_since >= STARTUP_TIMEOUT
        return (replica.liveness_failures >= LIVENESS_FAILURES
                and now - replica.failing_since >= LIVENESS_WINDOW)

    async def _probe(self, replica: Replica, path: str) -> bool:
        return await http_status(replica.port, path, self.check_timeout) == 200

    # --- start and stop ----------------------------------------------------------

    def _start(self, target: Target, restarts: int, surge: bool = False) -> None:
        port = free_port()
        item = target.desired
        entrypoint = item.env.get("FLEETPLANE_ENTRYPOINT", DEFAULT_ENTRYPOINT)
        env = {
            **os.environ,
            **item.env,
            "FLEETPLANE_WORKLOAD": item.workload,
            "FLEETPLANE_REPLICA": str(target.index),
            "FLEETPLANE_POOL": target.pool,
            "PORT": str(port),
            # Two cores shared by everything: one BLAS thread per replica.
            "OPENBLAS_NUM_THREADS": "1",
            "OMP_NUM_THREADS": "1",
        }
        logfile = (self.log_dir / f"{item.workload}-{target.index}.log").open("ab")
        popen = subprocess.Popen(
            [sys.executable, "-m", entrypoint, "--port", str(port)],
            # A replica runs in its release's directory (agent/delivery.py sets it).
            env=env, cwd=item.env.get("FLEETPLANE_ARTIFACT_DIR") or None,
            stdin=subprocess.DEVNULL, stdout=logfile, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        logfile.close()
        self._limit_memory(item.workload, target.index, popen.pid, int(item.resources.memory))
        replica = Replica(item.workload, target.index, target.pool, target.spec_hash, port,
                          popen.pid, process_start_time(popen.pid) or 0, popen, restarts=restarts)
        (self._surge if surge else self._replicas)[(item.workload, target.index)] = replica
        if self.wake is not None:
            watch = asyncio.create_task(self._until_ready(replica))
            self._ready_watches.add(watch)
            watch.add_done_callback(self._ready_watches.discard)
        self.state.save_replica(ReplicaRecord(item.workload, target.index, popen.pid,
                                              replica.start_time, port, target.pool,
                                              target.spec_hash), surge=surge)
        log.info("started %s/%d on pool %s (pid %d, port %d)%s",
                 item.workload, target.index, target.pool, popen.pid, port,
                 "; the previous replica serves until it is ready" if surge else "")

    async def _until_ready(self, replica: Replica) -> None:
        """Ask a just-started replica /readyz every FAST_READY_PROBE; wake reconcile when it is."""
        key = (replica.workload, replica.index)
        deadline = time.monotonic() + FAST_READY_WINDOW
        while time.monotonic() < deadline and not replica.ready and (
                self._replicas.get(key) is replica or self._surge.get(key) is replica):
            if not self._alive(replica):
                break  # the reconcile pass reports the exit
            if await self._probe(replica, "/readyz"):
                if self.wake is not None:
                    self.wake()
                return
            await asyncio.sleep(FAST_READY_PROBE)

    async def _stop(self, replica: Replica, grace: float | None = None) -> None:
        wait = self.grace_period if grace is None else grace
        self._signal(replica, signal.SIGTERM if wait > 0 else signal.SIGKILL)
        deadline = time.monotonic() + wait
        while self._alive(replica) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # polling for the exit, bounded by the grace period
        if self._alive(replica):
            self._signal(replica, signal.SIGKILL)
            while self._alive(replica):
                await asyncio.sleep(0.02)
        self._forget(replica)
        log.info("stopped %s/%d (pid %d)", replica.workload, replica.index, replica.pid)

    def _signal(self, replica: Replica, number: signal.Signals) -> None:
        try:
            os.killpg(replica.pid, number)
        except ProcessLookupError:
            return
        except PermissionError:
            os.kill(replica.pid, number)

    def _alive(self, replica: Replica) -> bool:
        if replica.popen is not None:
            return replica.popen.poll() is None
        return process_alive(replica.pid, replica.start_time)

    def _limit_memory(self, workload: str, index: int, pid: int, limit: int) -> None:
        if limit <= 0:
            return
        if self.cgroups is None or not self.cgroups.confine(workload, index, pid, limit):
            limit_with_rlimit(pid, limit)

    def _exit_reason(self, replica: Replica) -> str:
        if self.cgroups is not None and self.cgroups.oom_kills(
                replica.workload, replica.index, replica.pid):
            return "OOMKilled: over its memory limit"
        code = replica.popen.poll() if replica.popen is not None else None
        if code is None:
            return "exited (re-adopted; exit status unknown)"
        if code < 0:
            return f"killed by signal {signal.Signals(-code).name}"
        return f"exited with code {code}"

    def _forget(self, replica: Replica) -> None:
        if self.cgroups is not None:
            self.cgroups.remove(replica.workload, replica.index, replica.pid)
        self._vacate(replica)

    def _vacate(self, replica: Replica) -> None:
        key = (replica.workload, replica.index)
        # A replaced replica has already given up its slot (and its record) to its successor.
        for surge, slots in ((False, self._replicas), (True, self._surge)):
            if slots.get(key) is replica:
                del slots[key]
                self.state.forget_replica(replica.workload, replica.index, surge)

    # --- views and telemetry -----------------------------------------------------

    def replicas(self) -> list[ReplicaView]:
        views = [
            ReplicaView(r.workload, r.index, r.pool, "Ready" if r.ready else "Starting",
                        r.pid, r.port, r.restarts,
                        reason=self._last_exit.get((r.workload, r.index)))
            for r in self._replicas.values()
        ]
        views.extend(ReplicaView(r.workload, r.index, r.pool, SURGING, r.pid, r.port, r.restarts)
                     for r in self._surge.values())
        for (workload, index), backoff in self._backoff.items():
            if (workload, index) not in self._replicas:
                views.append(ReplicaView(workload, index, "", "BackOff", None, None,
                                         backoff.restarts,
                                         reason=self._last_exit.get((workload, index))))
        return views

    async def collect_telemetry(self) -> list[dict[str, Any]]:
        totals: dict[str, dict[str, Any]] = {}
        for replica in list(self._replicas.values()):
            stats = await self._stats(replica)
            if stats is None:
                continue
            delta = counter_delta(replica.stats, stats)
            replica.stats = stats
            total = totals.setdefault(replica.workload, {"workload": replica.workload,
                                                         "requests": 0, "errors": 0,
                                                         "latencySum": 0.0, "buckets": None,
                                                         "bucketBounds": stats["bucketBounds"]})
            total["requests"] += delta["requests"]
            total["errors"] += delta["errors"]
            total["latencySum"] += delta["latencySum"]
            buckets = total["buckets"] or [0] * len(delta["buckets"])
            total["buckets"] = [a + b for a, b in zip(buckets, delta["buckets"], strict=True)]
        return list(totals.values())

    async def _stats(self, replica: Replica) -> dict[str, Any] | None:
        try:
            answer = await self.client.get(f"http://127.0.0.1:{replica.port}/stats")
        except httpx.HTTPError:
            return None
        if answer.status_code != 200:
            return None
        stats: dict[str, Any] = answer.json()
        return stats

    async def close(self) -> None:
        # A replica still draining keeps running; its record makes the next agent stop it.
        pending = [*self._draining.values(), *self._ready_watches]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()


def counter_delta(previous: dict[str, Any] | None, current: dict[str, Any]) -> dict[str, Any]:
    """Counters since the previous scrape; a restarted replica (new pid) counts from zero."""
    if previous is None or previous.get("pid") != current.get("pid") or (
        current["requests"] < previous["requests"]
    ):
        return current
    return {
        "requests": current["requests"] - previous["requests"],
        "errors": current["errors"] - previous["errors"],
        "latencySum": current["latencySum"] - previous["latencySum"],
        "buckets": [a - b for a, b in zip(current["buckets"], previous["buckets"], strict=True)],
    }


async def http_status(port: int, path: str, timeout: float) -> int | None:
    """The status code of a GET on loopback; None when nothing answers in time.

    Two probes per replica every second: a bare request on a stream costs a
    fraction of an HTTP client's request, which keeps the idle agent under
    1 % of a core with several replicas.
    """
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            line = await reader.readline()
    except (OSError, TimeoutError):
        return None
    finally:
        if writer is not None:
            writer.close()
    parts = line.split()
    return int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def process_start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot (/proc/PID/stat field 22), None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def process_alive(pid: int, start_time: int) -> bool:
    return process_start_time(pid) == start_time
