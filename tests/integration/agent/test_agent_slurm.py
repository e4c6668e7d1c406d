"""The agent's ``slurm`` runtime against a real single-node Slurm (22.05, Debian packages).

``scripts/slurm-up.sh`` installs (if needed) and starts munged, slurmctld and
slurmd; these tests then run real ``fleetplane agent --runtime slurm``
processes whose batch workloads are real Slurm jobs running
``fleetplane.workloads.batch``. With ``CI=true`` a Slurm that cannot be
started fails the tests; elsewhere they are skipped with the reason (Slurm
not installed, or not root).
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import AgentPort, AgentProcess, stop_workloads, wait_for

from fleetplane.agent.runtimes.slurm_cli import parse_scontrol_job, parse_squeue_json

SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"
# The tests' sites, unique per test process: concurrent test sessions on one machine share
# the one Slurm cluster, and a job's name (fp:<site>:…) must not match another session's.
_SITES = itertools.count()
LOCK = Path("/tmp/fleetplane-slurm-tests.lock")
STARTED_MARK = Path("/tmp/fleetplane-slurm-tests.started")


def _slurm_ping() -> bool:
    if shutil.which("scontrol") is None:
        return False
    try:
        answer = subprocess.run(["scontrol", "ping"], capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        return False
    return answer.returncode == 0


@pytest.fixture(scope="module")
def slurm() -> Iterator[None]:
    """A running single-node Slurm, started if it is down.

    Every test session using it holds a shared lock; the last one to finish stops
    it again if one of them started it (and none while another still uses it).
    """
    with LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            _ensure_slurm()
            yield
        finally:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass  # another session still runs jobs on it: it stops Slurm when done
            else:
                if STARTED_MARK.exists():
                    subprocess.run(["bash", str(SCRIPTS / "slurm-down.sh")],
                                   capture_output=True, timeout=120)
                    STARTED_MARK.unlink()


def _ensure_slurm() -> None:
    if _slurm_ping():
        return
    in_ci = os.environ.get("CI") == "true"
    reason = None
    if os.geteuid() != 0:
        reason = "starting Slurm needs root (run scripts/slurm-up.sh as root)"
    elif shutil.which("sbatch") is None and not in_ci:
        reason = "Slurm is not installed (scripts/slurm-up.sh installs and starts it)"
    else:
        STARTED_MARK.touch()
        started = subprocess.run(["bash", str(SCRIPTS / "slurm-up.sh")], capture_output=True,
                                 text=True, timeout=600)
        if started.returncode != 0:
            reason = f"scripts/slurm-up.sh failed:\n{started.stdout}\n{started.stderr}"
    if reason is not None:
        if in_ci:
            pytest.fail(f"CI=true needs a running Slurm: {reason}")
        pytest.skip(reason)


class SlurmAgent(AgentProcess):
    """``fleetplane agent --runtime slurm`` as a real process (the harness's agent + a flag)."""

    def start(self) -> None:
        command = [sys.executable, "-m", "fleetplane.agent", "--runtime", "slurm",
                   "--server", self.port.url, "--site", self.site,
                   "--data-dir", str(self.data_dir), "--ca-cert", str(self.port.ca_file),
                   "--agent-id", "a1", "--health-listen", f"127.0.0.1:{self.health}",
                   "--heartbeat-interval", "0.5", "--telemetry-interval", "1"]
        if self.token:
            command += ["--bootstrap-token", self.token]
        log = (self.data_dir.parent / f"agent-{self.site}.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log.close()
        wait_for(lambda: self.get("/healthz") is not None, 60, "agent health endpoint")


@pytest.fixture
def agent(slurm: None, agent_port: AgentPort, tmp_path: Path) -> Iterator[SlurmAgent]:
    site = f"hpc-{os.getpid()}-{next(_SITES)}"
    agent_port.add_site(site)
    process = SlurmAgent(agent_port, site, tmp_path / "agent", agent_port.bootstrap_token(site))
    yield process
    process.stop()
    if (tmp_path / f"agent-{site}.log").exists():  # shown by pytest only when the test failed
        print("agent log (tail):\n" + "\n".join(
            line for line in process.log().splitlines()[-80:] if "HTTP Request" not in line))
    stop_workloads(tmp_path / "agent")
    for job in our_jobs(tmp_path):  # jobs outlive the agent, like process replicas do
        subprocess.run(["scancel", str(job["job_id"])], capture_output=True, timeout=30)


def batch(name: str, epochs: int, **extra: Any) -> dict[str, Any]:
    return {"workload": name, "workloadClass": "batch", "pool": "cpu", "profile": "cpu",
            "replicas": 1, "resources": {"cpu": 1, "memory": "512Mi"},
            "env": {"FLEETPLANE_EPOCHS": str(epochs)}, "batch": {"timeLimit": "10m"}, **extra}


def queue() -> list[dict[str, Any]]:
    """Every job slurmctld remembers (22.05's ``squeue --json`` ignores ``-j``)."""
    out = subprocess.run(["squeue", "--json"], capture_output=True, text=True, check=True,
                         timeout=30).stdout
    return [vars(job) for job in parse_squeue_json(out).values()]


def our_jobs(tmp_path: Path) -> list[dict[str, Any]]:
    """Jobs of this test's agent: their working directories are under its data directory."""
    jobs_file = tmp_path / "agent" / "jobs" / "jobs.json"
    names = {row["name"] for row in json.loads(jobs_file.read_text())} if (
        jobs_file.exists()) else set()
    return [job for job in queue() if job["name"] in names and job["state"] in (
        "PENDING", "RUNNING", "CONFIGURING", "COMPLETING")]


def scontrol_state(job_id: int) -> str | None:
    shown = subprocess.run(["scontrol", "show", "job", str(job_id)], capture_output=True,
                           text=True, timeout=30)
    job = parse_scontrol_job(shown.stdout)
    return job.state if job else None


def job_of(agent: AgentProcess, workload: str, state: str | None = None) -> dict[str, Any]:
    for view in agent.replicas():
        if view["workload"] == workload and view.get("job_id") and (
                state is None or view["state"] == state):
            return view
    return {}


def reported(agent: AgentProcess, workload: str, state: str) -> dict[str, Any]:
    for item in agent.port.site_status(agent.site).get("workloads") or []:
        if item["workload"] == workload and item["state"] == state:
            return dict(item)
    return {}


def test_batch_job_runs_to_completion_and_deleting_a_workload_cancels_its_job(
    agent_port: AgentPort, agent: SlurmAgent
) -> None:
    agent.start()
    agent_port.desire(agent.site, [batch("digits-train", epochs=8)])
    done = wait_for(lambda: reported(agent, "digits-train", "Completed"), 120,
                    "digits-train reported Completed")
    assert done["ready"] == 1 and done["replicas"] == 1
    view = job_of(agent, "digits-train", "COMPLETED")
    assert scontrol_state(view["job_id"]) == "COMPLETED"
    (result_file,) = (agent.data_dir / "jobs").glob("digits-train-0-*/result.json")
    result = json.loads(result_file.read_text())
    assert result["slurmJobId"] == str(view["job_id"]) and result["epochs"] == 8
    assert result["accuracy"] > 0.95 and result["samples"] == 360
    assert Path(result["model"]).is_file()

    # A long job starts; deleting its workload cancels it. The finished job stays finished.
    agent_port.desire(agent.site, [batch("digits-train", epochs=8), batch("long", epochs=100_000)])
    running = wait_for(lambda: job_of(agent, "long", "RUNNING"), 120, "long job RUNNING")
    assert scontrol_state(running["job_id"]) == "RUNNING"
    agent_port.desire(agent.site, [batch("digits-train", epochs=8)])
    wait_for(lambda: scontrol_state(running["job_id"]) == "CANCELLED", 60, "long job cancelled")
    wait_for(lambda: not job_of(agent, "long"), 30, "long job forgotten by the agent")
    assert "cancelled Slurm job" in agent.log()
    # (Earlier test runs' jobs of the same name may still be remembered: ids only grow.)
    since = [job["job_id"] for job in queue() if job["job_id"] >= view["job_id"]
             and job["name"].startswith(f"fp:{agent.site}:digits-train:")]
    assert since == [view["job_id"]], "a finished job is not rerun"


def test_agent_restart_re_adopts_a_running_job(agent_port: AgentPort, agent: SlurmAgent) -> None:
    agent.start()
    agent_port.desire(agent.site, [batch("long", epochs=100_000)])
    first = wait_for(lambda: job_of(agent, "long", "RUNNING"), 120, "long job RUNNING")

    # kill -9: the successor re-adopts the job from jobs.json instead of submitting another.
    agent.kill9()
    agent.token = None
    agent.start()
    adopted = wait_for(lambda: job_of(agent, "long", "RUNNING"), 60, "re-adopted job")
    assert adopted["job_id"] == first["job_id"]
    assert "re-adopting long/0 (Slurm job" in agent.log()

    # Without jobs.json it finds the job by its name (site, workload, replica, spec hash).
    agent.kill9()
    (agent.data_dir / "jobs" / "jobs.json").unlink()
    agent.start()
    adopted = wait_for(lambda: job_of(agent, "long", "RUNNING"), 60, "job re-adopted by name")
    assert adopted["job_id"] == first["job_id"]
    assert "found by name" in agent.log()
    live = [job for job in queue() if job["name"].startswith(f"fp:{agent.site}:long:")
            and job["state"] in ("PENDING", "RUNNING")]
    assert [job["job_id"] for job in live] == [first["job_id"]], "no duplicate was submitted"


def test_a_job_that_finishes_while_the_agent_is_down_is_reported_not_rerun(
    agent_port: AgentPort, agent: SlurmAgent
) -> None:
    agent.start()
    agent_port.desire(agent.site, [batch("short", epochs=400)])
    # Killed as soon as it has submitted: 400 epochs take seconds, so the job ends after.
    running = wait_for(lambda: job_of(agent, "short"), 120, "short job submitted")
    agent.kill9()
    assert scontrol_state(running["job_id"]) in ("PENDING", "RUNNING")
    wait_for(lambda: scontrol_state(running["job_id"]) == "COMPLETED", 120,
             "short job completes while the agent is down")
    agent.token = None
    agent.start()
    wait_for(lambda: reported(agent, "short", "Completed"), 60, "short reported Completed")
    assert job_of(agent, "short", "COMPLETED")["job_id"] == running["job_id"]
    assert list((agent.data_dir / "jobs").glob("short-0-*/result.json"))
    since = [job["job_id"] for job in queue() if job["job_id"] >= running["job_id"]
             and job["name"].startswith(f"fp:{agent.site}:short:")]
    assert since == [running["job_id"]], "the finished job was not submitted again"


def test_a_rejected_submit_is_reported_not_crashed(agent_port: AgentPort,
                                                   agent: SlurmAgent) -> None:
    agent.start()
    gpu = batch("needs-gpu", epochs=1,
                resources={"cpu": 1, "memory": "512Mi", "accelerator": {"kind": "gpu"}})
    wrong = batch("wrong-partition", epochs=1, batch={"partition": "nosuch"})
    agent_port.desire(agent.site, [gpu, wrong])
    rejected = wait_for(lambda: reported(agent, "needs-gpu", "Rejected"), 60,
                        "needs-gpu reported Rejected")
    assert "Invalid generic resource" in rejected["message"]
    assert "--gres=gpu:1" in rejected["message"]
    other = wait_for(lambda: reported(agent, "wrong-partition", "Rejected"), 30,
                     "wrong-partition reported Rejected")
    assert "Invalid partition" in other["message"]

    # The agent carries on: a good job next to the rejected ones runs; nothing is resubmitted.
    agent_port.desire(agent.site, [gpu, wrong, batch("fine", epochs=1)])
    wait_for(lambda: reported(agent, "fine", "Completed"), 120, "fine reported Completed")
    assert agent.get("/healthz")["status"] == "ok"
    assert agent.log().count("needs-gpu/0: sbatch refused the job") == 1
