"""What the Slurm runtime reads from Slurm 22.05: output captured from a real single-node cluster.

The files in ``slurm_output/`` were produced on this project's CI machine kind
(Debian 12, Slurm 22.05.8 from ``scripts/slurm-up.sh``): ``squeue --json``
with a running, a pending and a completed job, then with a cancelled
(running), a cancelled (pending) and a failed (exit 3) job; ``scontrol show
job`` for each state plus a job that hit its time limit; and the
``jobcomp/filetxt`` log of all of them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetplane.agent.runtimes.base import targets
from fleetplane.agent.runtimes.slurm import (
    REJECTED,
    JobFile,
    JobRecord,
    choose_partition,
    job_name,
    job_script,
    job_workload_state,
    sbatch_options,
    split_desired,
)
from fleetplane.agent.runtimes.slurm_cli import (
    JobCompLog,
    SlurmUnavailable,
    key_values,
    parse_jobcomp_line,
    parse_partitions,
    parse_scontrol_job,
    parse_squeue_json,
)
from fleetplane.model.desired_state import DesiredWorkload, SiteDesiredStateSpec

OUTPUT = Path(__file__).parent / "slurm_output"


def read(name: str) -> str:
    return (OUTPUT / name).read_text()


def workload(name: str = "train", cls: str = "batch", **extra: object) -> DesiredWorkload:
    return DesiredWorkload.model_validate({
        "workload": name, "workloadClass": cls, "pool": "hpc", "profile": "cpu",
        "replicas": 1, "resources": {"cpu": "1500m", "memory": "1Gi"}, **extra})


def test_squeue_json_lists_every_job_with_state_and_exit_code() -> None:
    jobs = parse_squeue_json(read("squeue-running-pending-completed.json"))
    assert {j.job_id: (j.name, j.state) for j in jobs.values()} == {
        1: ("fp-demo", "COMPLETED"), 2: ("fp-long", "RUNNING"), 3: ("fp-pend", "PENDING")}
    assert jobs[3].reason == "Resources" and jobs[2].reason is None
    assert jobs[2].partition == "debug"

    after = parse_squeue_json(read("squeue-cancelled-failed.json"))
    assert (after[2].state, after[2].exit_code) == ("CANCELLED", "0:15")  # killed by SIGTERM
    assert (after[4].state, after[4].exit_code) == ("FAILED", "3:0")
    assert after[4].reason == "NonZeroExitCode"


def test_squeue_json_errors_are_slurm_unavailable() -> None:
    with pytest.raises(SlurmUnavailable, match="reported errors"):
        parse_squeue_json('{"errors": [{"error": "Unable to contact slurm controller"}],'
                          ' "jobs": []}')


@pytest.mark.parametrize(("name", "state", "reason", "exit_code"), [
    ("scontrol-running.txt", "RUNNING", None, "0:0"),
    ("scontrol-pending.txt", "PENDING", "Resources", "0:0"),
    ("scontrol-failed.txt", "FAILED", "NonZeroExitCode", "3:0"),
    ("scontrol-cancelled.txt", "CANCELLED", None, "0:15"),
    ("scontrol-cancelled-pending.txt", "CANCELLED", "Resources", "0:0"),
    ("scontrol-timeout.txt", "TIMEOUT", "TimeLimit", "0:15"),
])
def test_scontrol_show_job(name: str, state: str, reason: str | None, exit_code: str) -> None:
    job = parse_scontrol_job(read(name))
    assert job is not None
    assert (job.state, job.reason, job.exit_code, job.partition) == (state, reason, exit_code,
                                                                     "debug")
    assert job.name.startswith("fp-")


def test_scontrol_without_a_job_is_none() -> None:
    assert parse_scontrol_job("") is None
    assert parse_scontrol_job("slurm_load_jobs error: Invalid job id specified") is None


def test_key_values_keep_spaces_inside_values() -> None:
    fields = key_values("JobId=7 JobName=my job\n   WorkDir=/tmp/a b AllocNode:Sid=localhost:59")
    assert fields == {"JobId": "7", "JobName": "my job", "WorkDir": "/tmp/a b",
                      "AllocNode:Sid": "localhost:59"}


def test_jobcomp_lines() -> None:
    jobs = [parse_jobcomp_line(line) for line in read("jobcomp.log").splitlines()]
    assert [(j.job_id, j.name, j.state, j.exit_code) for j in jobs if j] == [
        (1, "fp-demo", "COMPLETED", "0:0"), (2, "fp-long", "CANCELLED", "0:0"),
        (3, "fp-pend", "CANCELLED", "0:0"), (4, "fp-fail", "FAILED", "3:0"),
        (5, "fp-timeout", "TIMEOUT", "0:0")]
    assert parse_jobcomp_line("not a job record") is None


def test_jobcomp_log_is_read_incrementally_and_keeps_only_our_jobs(tmp_path: Path) -> None:
    path = tmp_path / "jobcomp.log"
    path.write_text(read("jobcomp.log"))
    ours = "JobId=9 UserId=root(0) GroupId=root(0) Name=fp:s:w:0:ab JobState=COMPLETED " \
           "Partition=debug ExitCode=0:0 \n"
    log = JobCompLog(path, prefix="fp:")
    log.refresh()
    assert log.jobs == {}
    with path.open("a") as handle:
        handle.write(ours + ours.replace("JobId=9", "JobId=10")[:40])  # second line half written
    log.refresh()
    assert list(log.jobs) == [9]
    assert log.find(9, "fp:s:w:0:ab") is not None
    assert log.find(9, "fp:other") is None, "a reused job id with another name is not ours"
    with path.open("a") as handle:
        handle.write(ours.replace("JobId=9", "JobId=10")[40:])
    log.refresh()
    assert sorted(log.jobs) == [9, 10]
    path.write_text(ours.replace("JobId=9", "JobId=11"))  # rotated: shorter than the offset
    log.refresh()
    assert 11 in log.jobs


def test_partitions_and_the_default() -> None:
    assert parse_partitions("debug*\ngpu\n") == ({"debug", "gpu"}, "debug")
    item = workload()
    assert choose_partition(item, "gpu", {"debug", "gpu"}, "debug") == "gpu"
    assert choose_partition(item, "hpc", {"debug", "gpu"}, "debug") == "debug"
    explicit = workload(batch={"partition": "long"})
    assert choose_partition(explicit, "gpu", {"debug", "gpu"}, "debug") == "long"


def test_sbatch_options_carry_resources_gres_and_deadline(tmp_path: Path) -> None:
    item = workload(resources={"cpu": "1500m", "memory": "1536Mi",
                               "accelerator": {"kind": "gpu", "count": 2}},
                    batch={"timeLimit": "90m"})
    spec = SiteDesiredStateSpec(site="hpc-1", revision=1, workloads=[item])
    (target,) = targets(spec, set())
    name = job_name("hpc-1", target)
    assert name == f"fp:hpc-1:train:0:{target.spec_hash}"
    options = sbatch_options(target, name, tmp_path, "debug")
    assert options == [f"--job-name={name}", f"--chdir={tmp_path}",
                       f"--output={tmp_path}/slurm-%j.out", "--cpus-per-task=2", "--mem=1536M",
                       "--partition=debug", "--time=90", "--gres=gpu:2"]
    one_model = workload(resources={"cpu": 1, "memory": "1Gi", "accelerator": {
        "kind": "gpu", "count": 1, "models": ["a100"]}})
    (target,) = targets(SiteDesiredStateSpec(site="s", revision=1, workloads=[one_model]), set())
    assert "--gres=gpu:1" in sbatch_options(target, "n", tmp_path, None)
    assert not any(o.startswith("--partition") for o in sbatch_options(target, "n", tmp_path,
                                                                       None))


def test_job_script_quotes_the_environment() -> None:
    item = workload(env={"FLEETPLANE_EPOCHS": "3", "NOTE": "it's $HOME; rm -rf /"})
    (target,) = targets(SiteDesiredStateSpec(site="s", revision=1, workloads=[item]), set())
    script = job_script(target)
    assert "export NOTE='it'\"'\"'s $HOME; rm -rf /'" in script
    assert "export FLEETPLANE_EPOCHS=3" in script
    assert script.rstrip().endswith("-m fleetplane.workloads.batch")


def test_split_by_class() -> None:
    spec = SiteDesiredStateSpec(site="s", revision=3, workloads=[
        workload("a", "batch"), workload("b", "training"),
        workload("c", "inference"), workload("d", "streaming")])
    jobs, rest = split_desired(spec)
    assert [w.workload for w in jobs.workloads] == ["a", "b"]
    assert [w.workload for w in rest.workloads] == ["c", "d"]
    assert jobs.revision == rest.revision == 3


def record(index: int, state: str, detail: str | None = None) -> JobRecord:
    return JobRecord("train", index, "h", f"n{index}", None if state == REJECTED else 10 + index,
                     state, detail)


@pytest.mark.parametrize(("states", "expected", "ready"), [
    (["PENDING", "PENDING"], "Pending", 0),
    (["RUNNING", "PENDING"], "Running", 1),
    (["COMPLETED", "RUNNING"], "Running", 2),
    (["COMPLETED", "COMPLETED"], "Completed", 2),
    (["COMPLETED"], "Pending", 1),  # the second replica's job is not submitted yet
    (["COMPLETED", "TIMEOUT"], "Failed", 1),
    (["CANCELLED", "RUNNING"], "Cancelled", 1),
    ([REJECTED, "RUNNING"], "Rejected", 1),
])
def test_workload_state_from_jobs(states: list[str], expected: str, ready: int) -> None:
    item = workload(replicas=2)
    state = job_workload_state(item, [record(i, s) for i, s in enumerate(states)], None)
    assert (state.state, state.ready, state.replicas) == (expected, ready, 2)


def test_workload_state_message_names_jobs_and_an_unreachable_slurm() -> None:
    state = job_workload_state(workload(), [record(0, REJECTED, "sbatch refused the job")],
                               "squeue timed out")
    assert state.message == ("0: job - REJECTED (sbatch refused the job); "
                             "Slurm unreachable: squeue timed out")


def test_job_file_round_trip_and_corrupt_file(tmp_path: Path) -> None:
    store = JobFile(tmp_path / "jobs.json")
    assert store.load() == {}
    records = {("train", 0): record(0, "RUNNING")}
    store.save(records)
    assert store.load() == records
    (tmp_path / "jobs.json").write_text("{not json")
    assert store.load() == {}
