"""The Slurm runtime's decisions (submit, adopt, cancel, wait) against a scripted Slurm.

The real cluster is exercised by ``tests/integration/agent/test_agent_slurm.py``;
here a ``SlurmCli`` whose answers the test sets drives the cases a single
healthy node cannot produce on demand: slurmctld unreachable, a job that
vanished, a job left by an agent that lost its ``jobs.json``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from fleetplane.agent.runtimes.slurm import SlurmRuntime
from fleetplane.agent.runtimes.slurm_cli import SlurmCli, SlurmJob, SlurmUnavailable
from fleetplane.model.desired_state import SiteDesiredStateSpec


@dataclass(frozen=True)
class ScriptedSlurm(SlurmCli):
    jobs: dict[int, SlurmJob] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)
    down: list[bool] = field(default_factory=lambda: [False])

    def _reachable(self, call: str) -> None:
        self.calls.append(call)
        if self.down[0]:
            raise SlurmUnavailable("squeue --json did not answer within 15 s")

    async def submit(self, options: list[str], script: Path) -> int:
        self._reachable("sbatch")
        job_id = max(self.jobs, default=100) + 1
        name = next(o.split("=", 1)[1] for o in options if o.startswith("--job-name="))
        self.jobs[job_id] = SlurmJob(job_id, name, "PENDING")
        return job_id

    async def queue(self) -> dict[int, SlurmJob]:
        self._reachable("squeue")
        return dict(self.jobs)

    async def show(self, job_id: int) -> SlurmJob | None:
        self._reachable("scontrol")
        return None

    async def cancel(self, job_id: int) -> None:
        self._reachable("scancel")
        job = self.jobs[job_id]
        self.jobs[job_id] = SlurmJob(job_id, job.name, "CANCELLED")

    async def partitions(self) -> tuple[set[str], str | None]:
        return {"debug"}, "debug"

    async def jobcomp_location(self) -> Path | None:
        return None


def desired(epochs: str = "3", replicas: int = 1) -> SiteDesiredStateSpec:
    return SiteDesiredStateSpec.model_validate({"site": "hpc", "revision": 1, "workloads": [{
        "workload": "train", "workloadClass": "batch", "pool": "debug", "profile": "cpu",
        "replicas": replicas, "resources": {"cpu": 1, "memory": "1Gi"},
        "env": {"FLEETPLANE_EPOCHS": epochs}}]})


def runtime(tmp_path: Path, slurm: ScriptedSlurm) -> SlurmRuntime:
    # poll_interval 0: every reconcile reads the queue, so the test needs no waiting.
    return SlurmRuntime(tmp_path / "jobs", cli=slurm, poll_interval=0.0)


def test_submits_once_and_cancels_on_a_spec_change(tmp_path: Path) -> None:
    slurm = ScriptedSlurm()
    jobs = runtime(tmp_path, slurm)
    for _ in range(3):
        asyncio.run(jobs.reconcile(desired(), set()))
    assert slurm.calls.count("sbatch") == 1
    (first,) = slurm.jobs
    slurm.jobs[first] = SlurmJob(first, slurm.jobs[first].name, "COMPLETED")
    asyncio.run(jobs.reconcile(desired(), set()))
    assert slurm.calls.count("sbatch") == 1, "a completed job is not rerun"
    (state,) = jobs.workload_states(desired())
    assert (state.state, state.ready) == ("Completed", 1)

    asyncio.run(jobs.reconcile(desired(epochs="5"), set()))
    assert slurm.calls.count("sbatch") == 2 and "scancel" not in slurm.calls, \
        "a finished job needs no scancel; the new spec runs anew"
    second = max(slurm.jobs)
    asyncio.run(jobs.reconcile(desired(epochs="7"), set()))
    assert slurm.jobs[second].state == "CANCELLED" and slurm.calls.count("sbatch") == 3


def test_nothing_is_submitted_while_slurm_is_unreachable(tmp_path: Path) -> None:
    slurm = ScriptedSlurm(down=[True])
    jobs = runtime(tmp_path, slurm)
    asyncio.run(jobs.reconcile(desired(), set()))
    assert "sbatch" not in slurm.calls
    (state,) = jobs.workload_states(desired())
    assert state.state == "Pending" and "Slurm unreachable" in (state.message or "")
    slurm.down[0] = False
    jobs._next_poll = 0.0  # the back-off after the failure has passed
    asyncio.run(jobs.reconcile(desired(), set()))
    assert slurm.calls.count("sbatch") == 1
    (state,) = jobs.workload_states(desired())
    assert state.message == f"0: job {max(slurm.jobs)} PENDING"


def test_a_successor_without_jobs_json_adopts_by_name(tmp_path: Path) -> None:
    slurm = ScriptedSlurm()
    asyncio.run(runtime(tmp_path, slurm).reconcile(desired(), set()))
    (job_id,) = slurm.jobs
    (tmp_path / "jobs" / "jobs.json").unlink()
    successor = runtime(tmp_path, slurm)
    asyncio.run(successor.reconcile(desired(), set()))
    assert slurm.calls.count("sbatch") == 1
    assert [view.job_id for view in successor.replicas()] == [job_id]  # type: ignore[attr-defined]


def test_a_job_slurm_no_longer_knows_is_lost(tmp_path: Path) -> None:
    slurm = ScriptedSlurm()
    jobs = runtime(tmp_path, slurm)
    asyncio.run(jobs.reconcile(desired(), set()))
    slurm.jobs.clear()  # gone from slurmctld, and no job-completion log to look in
    asyncio.run(jobs.reconcile(desired(), set()))
    (state,) = jobs.workload_states(desired())
    assert state.state == "Failed" and "LOST" in (state.message or "")
    assert slurm.calls.count("sbatch") == 1


def test_slurm_is_not_asked_when_no_job_is_pending_or_running(tmp_path: Path) -> None:
    slurm = ScriptedSlurm()
    jobs = runtime(tmp_path, slurm)
    asyncio.run(jobs.reconcile(SiteDesiredStateSpec(site="hpc", revision=1), set()))
    assert slurm.calls == []
    asyncio.run(jobs.reconcile(desired(), set()))
    (job_id,) = slurm.jobs
    slurm.jobs[job_id] = SlurmJob(job_id, slurm.jobs[job_id].name, "COMPLETED")
    asyncio.run(jobs.reconcile(desired(), set()))
    calls = len(slurm.calls)
    for _ in range(3):
        asyncio.run(jobs.reconcile(desired(), set()))
    assert len(slurm.calls) == calls, "a finished job needs no polling"


def test_a_job_that_finished_while_the_agent_was_down_is_read_from_the_jobcomp_log(
    tmp_path: Path
) -> None:
    slurm = ScriptedSlurm()
    asyncio.run(runtime(tmp_path, slurm).reconcile(desired(), set()))
    (job_id,) = slurm.jobs
    name = slurm.jobs[job_id].name
    slurm.jobs.clear()  # finished long enough ago that slurmctld forgot it (MinJobAge)
    log = tmp_path / "jobcomp.log"
    log.write_text(f"JobId={job_id} UserId=root(0) GroupId=root(0) Name={name} "
                   "JobState=FAILED Partition=debug TimeLimit=10 NodeList=vm ExitCode=3:0 \n")
    successor = SlurmRuntime(tmp_path / "jobs", cli=slurm, poll_interval=0.0, jobcomp_path=log)
    asyncio.run(successor.reconcile(desired(), set()))
    (state,) = successor.workload_states(desired())
    assert (state.state, state.message) == ("Failed", f"0: job {job_id} FAILED (exit 3:0)")
    assert slurm.calls.count("sbatch") == 1
