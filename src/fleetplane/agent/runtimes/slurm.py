"""Batch and training workloads as Slurm jobs on an HPC site; everything else as processes.

``fleetplane agent --runtime slurm`` makes the agent an HPC site's agent:
replicas of ``batch`` and ``training`` workloads become Slurm jobs (one job
per replica), request-serving workloads (``inference``, ``streaming``,
``control``) still run as local processes through the process runtime —
a job scheduler is the wrong home for a service that must answer requests.

A job runs to completion once per spec: the runtime submits it when the
desired state asks for it, tracks it, and never submits it again for the
same spec — not after it completed, failed or was rejected, and not after
an agent restart. Changing the workload's spec (its spec hash), or deleting
and re-adding it, runs it anew; deleting it cancels a job still queued or
running.

Everything goes through Slurm's command-line tools (``sbatch --parsable``,
``squeue --json``, ``scontrol show job``, ``scancel``, ``sinfo``) as asyncio
subprocesses with timeouts; Slurm 22.05 (Debian 12) has no accounting here,
so jobs that finished while the agent was down and have already left
slurmctld's memory (``MinJobAge``) are read from the job-completion log
(``jobcomp/filetxt``). Job ids live in ``jobs/jobs.json`` in the data
directory; the job name ``fp:<site>:<workload>:<replica>:<spec hash>`` lets
a restarted agent re-adopt a queued or running job even when that file was
lost, instead of submitting a duplicate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import re
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fleetplane.agent.runtimes.base import ReplicaView, Runtime, Target, targets
from fleetplane.agent.runtimes.slurm_cli import (
    JobCompLog,
    SlurmCli,
    SlurmJob,
    SlurmRejected,
    SlurmUnavailable,
)
from fleetplane.model.desired_state import DesiredWorkload, SiteDesiredStateSpec
from fleetplane.model.infrastructure import WorkloadState
from fleetplane.model.workload import JOB_CLASSES

log = logging.getLogger("fleetplane.agent")

DEFAULT_ENTRYPOINT = "fleetplane.workloads.batch"
POLL_INTERVAL = 2.0
POLL_BACKOFF_CAP = 60.0
JOBS_FILE = "jobs.json"

ACTIVE = frozenset({"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED",
                    "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESIZING", "SIGNALING",
                    "STAGE_OUT", "STOPPED", "RESV_DEL_HOLD", "SPECIAL_EXIT"})
FAILED = frozenset({"FAILED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL",
                    "DEADLINE", "PREEMPTED", "LOST"})
# States only this runtime uses: Slurm refused the job at submit; the job vanished.
REJECTED = "REJECTED"
LOST = "LOST"
TERMINAL = FAILED | {"COMPLETED", "CANCELLED", REJECTED}


# --- what the runtime remembers -------------------------------------------------------


@dataclass
class JobRecord:
    workload: str
    index: int
    spec_hash: str
    name: str
    job_id: int | None
    state: str
    detail: str | None = None
    workdir: str = ""

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


class JobFile:
    """``jobs.json``: the job of every replica, replaced atomically on each change."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[tuple[str, int], JobRecord]:
        try:
            rows = json.loads(self.path.read_text())
            records = [JobRecord(**row) for row in rows]
        except FileNotFoundError:
            return {}
        except (ValueError, TypeError) as error:
            log.warning("%s is unreadable (%s); re-adopting queued and running jobs by name",
                        self.path, error)
            return {}
        return {(r.workload, r.index): r for r in records}

    def save(self, records: dict[tuple[str, int], JobRecord]) -> None:
        partial = self.path.with_name(f".{self.path.name}.partial")
        partial.write_text(json.dumps([asdict(r) for r in records.values()], indent=1))
        os.replace(partial, self.path)


@dataclass(frozen=True)
class JobView(ReplicaView):
    """A replica that is a Slurm job: its job id and what Slurm said, besides the replica view."""

    job_id: int | None = None
    detail: str | None = None


# --- the runtime ----------------------------------------------------------------------


def job_name(site: str, target: Target) -> str:
    return f"fp:{site}:{target.workload}:{target.index}:{target.spec_hash}"


def gres(item: DesiredWorkload) -> str | None:
    request = item.resources.accelerator
    if request is None:
        return None
    # Untyped (``gpu:N``): the partition already picks the hardware, and a cluster's GRES type
    # names need not match fleetplane's accelerator model names.
    return f"{request.kind}:{request.count}"


def choose_partition(item: DesiredWorkload, pool: str, partitions: set[str],
                     default: str | None) -> str | None:
    """``batch.partition``, else the pool's name if it is a partition, else the default (None)."""
    if item.batch is not None and item.batch.partition:
        return item.batch.partition
    return pool if pool in partitions else default


def sbatch_options(target: Target, name: str, workdir: Path, partition: str | None) -> list[str]:
    item = target.desired
    options = [f"--job-name={name}", f"--chdir={workdir}", f"--output={workdir}/slurm-%j.out",
               f"--cpus-per-task={max(1, math.ceil(item.resources.cpu))}",
               f"--mem={max(1, math.ceil(item.resources.memory / 2**20))}M"]
    if partition:
        options.append(f"--partition={partition}")
    if item.batch is not None and item.batch.time_limit:
        options.append(f"--time={max(1, math.ceil(item.batch.time_limit / 60))}")
    requested = gres(item)
    if requested:
        options.append(f"--gres={requested}")
    return options


def job_script(target: Target) -> str:
    item = target.desired
    cpus = str(max(1, math.ceil(item.resources.cpu)))
    env = {**item.env, "FLEETPLANE_WORKLOAD": item.workload,
           "FLEETPLANE_REPLICA": str(target.index), "FLEETPLANE_POOL": target.pool,
           "OPENBLAS_NUM_THREADS": cpus, "OMP_NUM_THREADS": cpus}
    entrypoint = item.env.get("FLEETPLANE_ENTRYPOINT", DEFAULT_ENTRYPOINT)
    lines = ["#!/bin/sh", f"# {item.workload}/{target.index}, spec {target.spec_hash}: "
             "written by the fleetplane agent"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in sorted(env.items())
              if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key)]
    release = item.env.get("FLEETPLANE_ARTIFACT_DIR")
    if release:
        # The entrypoint may live in the workload's release; outputs stay in the job's directory.
        lines.append(f'export PYTHONPATH={shlex.quote(release)}"${{PYTHONPATH:+:$PYTHONPATH}}"')
    lines.append(f"exec {shlex.quote(sys.executable)} -m {shlex.quote(entrypoint)}")
    return "\n".join(lines) + "\n"


def split_desired(desired: SiteDesiredStateSpec) -> tuple[SiteDesiredStateSpec,
                                                          SiteDesiredStateSpec]:
    """(batch/training workloads, the rest)."""
    jobs = [w for w in desired.workloads if w.workload_class in JOB_CLASSES]
    rest = [w for w in desired.workloads if w.workload_class not in JOB_CLASSES]
    return (desired.model_copy(update={"workloads": jobs}),
            desired.model_copy(update={"workloads": rest}))


@dataclass
class SlurmRuntime(Runtime):
    """Slurm jobs for batch/training replicas; ``services`` runs every other workload."""

    work_dir: Path
    services: Runtime | None = None
    cli: SlurmCli = field(default_factory=SlurmCli)
    poll_interval: float = POLL_INTERVAL
    jobcomp_path: Path | None = None
    name: str = "slurm"
    _records: dict[tuple[str, int], JobRecord] = field(default_factory=dict)
    _queue: dict[int, SlurmJob] = field(default_factory=dict)
    _next_poll: float = 0.0
    _poll_failures: int = 0
    _problem: str | None = None
    _jobcomp: JobCompLog | None = None
    _retry_at: dict[tuple[str, int], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._file = JobFile(self.work_dir / JOBS_FILE)
        self._records = self._file.load()
        for record in self._records.values():
            if not record.terminal:
                log.info("re-adopting %s/%d (Slurm job %s, %s)", record.workload, record.index,
                         record.job_id, record.state)

    # --- reconcile ---------------------------------------------------------------------

    async def reconcile(self, desired: SiteDesiredStateSpec, failed_pools: set[str]) -> None:
        jobs, rest = split_desired(desired)
        if self.services is not None:
            await self.services.reconcile(rest, failed_pools)
        wanted = {(t.workload, t.index): t for t in targets(jobs, failed_pools)}
        stale = [key for key, record in self._records.items()
                 if key not in wanted or wanted[key].spec_hash != record.spec_hash]
        now = time.monotonic()
        due = [key for key in wanted if (key not in self._records or key in stale)
               and now >= self._retry_at.get(key, 0.0)]
        # Slurm is asked only while a job is to be submitted or still queued/running: an HPC
        # site's agent whose jobs are all done (or that runs only services) stays idle.
        tracking = any(r.job_id is not None and not r.terminal for r in self._records.values())
        polled = await self._poll(force=bool(due)) if due or tracking else True
        for key in stale:
            if await self._cancel(self._records[key]):
                del self._records[key]
                self._file.save(self._records)
        if not polled:
            return  # without a fresh queue a submit could duplicate a job we cannot see
        for key in due:
            if key not in self._records:
                await self._submit(wanted[key], desired.site)

    async def _poll(self, force: bool) -> bool:
        """Refresh the queue and every tracked job's state; False while Slurm is unreachable."""
        now = time.monotonic()
        if now < self._next_poll and (not force or self._poll_failures):
            return self._poll_failures == 0  # fresh enough, or backing off from a failure
        try:
            self._queue = await self.cli.queue()
            changed = [await self._track(r) for r in self._records.values()
                       if r.job_id is not None and not r.terminal]
        except SlurmUnavailable as error:
            self._poll_failures += 1
            delay = min(POLL_BACKOFF_CAP, self.poll_interval * 2 ** self._poll_failures)
            self._next_poll = now + delay
            if self._problem is None:
                log.warning("Slurm unreachable (%s); jobs keep their last known state, "
                            "retrying in %.0f s", error, delay)
            self._problem = str(error)
            return False
        if self._problem is not None:
            log.info("Slurm reachable again")
        self._problem, self._poll_failures = None, 0
        self._next_poll = now + self.poll_interval
        if any(changed):
            self._file.save(self._records)
        return True

    async def _track(self, record: JobRecord) -> bool:
        assert record.job_id is not None
        job = self._queue.get(record.job_id)
        if job is None or job.name != record.name:
            job = await self.cli.show(record.job_id)
        if job is None or job.name != record.name:
            job = await self._finished(record.job_id, record.name)
        if job is None:
            job = SlurmJob(record.job_id, record.name, LOST,
                           reason="neither in the queue nor in the job-completion log")
        detail = job_detail(job)
        if (job.state, detail) == (record.state, record.detail):
            return False
        log.info("%s/%d: Slurm job %d %s%s", record.workload, record.index, record.job_id,
                 job.state, f" ({detail})" if detail else "")
        record.state, record.detail = job.state, detail
        return True

    async def _finished(self, job_id: int, name: str) -> SlurmJob | None:
        if self._jobcomp is None:
            path = self.jobcomp_path or await self.cli.jobcomp_location()
            self._jobcomp = JobCompLog(path)
        await asyncio.to_thread(self._jobcomp.refresh)
        return self._jobcomp.find(job_id, name)

    # --- submit and cancel -------------------------------------------------------------

    async def _submit(self, target: Target, site: str) -> None:
        key = (target.workload, target.index)
        name = job_name(site, target)
        workdir = self.work_dir / f"{target.workload}-{target.index}-{target.spec_hash}"
        running = [job for job in self._queue.values()
                   if job.name == name and job.state in ACTIVE]
        if running:
            job = max(running, key=lambda j: j.job_id)
            log.info("re-adopted %s/%d: Slurm job %d (%s) found by name", *key, job.job_id,
                     job.state)
            self._remember(JobRecord(*key, target.spec_hash, name, job.job_id, job.state,
                                     job_detail(job), str(workdir)))
            return
        try:
            partitions, default = await self.cli.partitions()
            partition = choose_partition(target.desired, target.pool, partitions, default)
            workdir.mkdir(parents=True, exist_ok=True)
            script = workdir / "job.sh"
            script.write_text(job_script(target))
            job_id = await self.cli.submit(sbatch_options(target, name, workdir, partition),
                                           script)
        except SlurmRejected as error:
            log.error("%s/%d: %s", *key, error)
            self._remember(JobRecord(*key, target.spec_hash, name, None, REJECTED, str(error),
                                     str(workdir)))
            return
        except SlurmUnavailable as error:
            self._retry_at[key] = time.monotonic() + self.poll_interval * 4
            log.warning("%s/%d: not submitted yet (%s)", *key, error)
            return
        log.info("submitted %s/%d as Slurm job %d (partition %s)", *key, job_id,
                 partition or "default")
        self._remember(JobRecord(*key, target.spec_hash, name, job_id, "PENDING", None,
                                 str(workdir)))
        self._next_poll = 0.0  # learn the new job's state on the next tick

    def _remember(self, record: JobRecord) -> None:
        self._records[(record.workload, record.index)] = record
        self._retry_at.pop((record.workload, record.index), None)
        self._file.save(self._records)

    async def _cancel(self, record: JobRecord) -> bool:
        """scancel a job that may still run; False (kept, retried) when Slurm is unreachable."""
        if record.job_id is None or record.terminal:
            return True
        try:
            await self.cli.cancel(record.job_id)
        except SlurmUnavailable as error:
            log.warning("cannot cancel Slurm job %d of %s/%d yet: %s", record.job_id,
                        record.workload, record.index, error)
            return False
        log.info("cancelled Slurm job %d of %s/%d", record.job_id, record.workload,
                 record.index)
        return True

    # --- views -------------------------------------------------------------------------

    def replicas(self) -> list[ReplicaView]:
        views = self.services.replicas() if self.services is not None else []
        views += [JobView(r.workload, r.index, "", r.state, None, None, 0, r.job_id, r.detail)
                  for r in self._records.values()]
        return views

    def workload_states(self, desired: SiteDesiredStateSpec | None) -> list[WorkloadState]:
        if desired is None:
            return []
        jobs, rest = split_desired(desired)
        by_name: dict[str, WorkloadState] = {}
        if self.services is not None:
            by_name.update((s.workload, s) for s in self.services.workload_states(rest))
        for item in jobs.workloads:
            own = [r for r in self._records.values() if r.workload == item.workload]
            by_name[item.workload] = job_workload_state(item, own, self._problem)
        return [by_name[item.workload] for item in desired.workloads if item.workload in by_name]

    async def collect_telemetry(self) -> list[dict[str, Any]]:
        # Jobs answer no requests: only the services have request telemetry.
        return await self.services.collect_telemetry() if self.services is not None else []

    async def close(self) -> None:
        if self.services is not None:
            await self.services.close()


def job_detail(job: SlurmJob) -> str | None:
    parts = []
    if job.reason and job.reason != "None":
        parts.append(job.reason)
    if job.exit_code and job.exit_code != "0:0":
        parts.append(f"exit {job.exit_code}")
    return ", ".join(parts) or None


def job_workload_state(item: DesiredWorkload, records: list[JobRecord],
                       problem: str | None) -> WorkloadState:
    """One workload's state from its jobs: the worst of them wins."""
    states = [r.state for r in records]
    ready = sum(s in ("RUNNING", "COMPLETING", "COMPLETED") for s in states)
    if REJECTED in states:
        state = "Rejected"
    elif any(s in FAILED for s in states):
        state = "Failed"
    elif "CANCELLED" in states:
        state = "Cancelled"
    elif len(states) >= item.replicas and all(s == "COMPLETED" for s in states):
        state = "Completed"
    elif any(s in ("RUNNING", "COMPLETING") for s in states):
        state = "Running"
    else:
        state = "Pending"
    notes = [f"{r.index}: job {r.job_id if r.job_id is not None else '-'} {r.state}"
             + (f" ({r.detail})" if r.detail else "") for r in sorted(records,
                                                                      key=lambda r: r.index)]
    if problem:
        notes.append(f"Slurm unreachable: {problem}")
    return WorkloadState(workload=item.workload, replicas=item.replicas, ready=ready,
                         state=state, message="; ".join(notes) or None)
