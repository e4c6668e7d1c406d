"""Slurm's command-line tools from asyncio, and what they print, parsed (Slurm 22.05).

Used by the agent's ``slurm`` runtime (:mod:`fleetplane.agent.runtimes.slurm`).
Every call is a subprocess bounded by a timeout. Pitfalls of 22.05 handled
here: ``squeue --json`` ignores ``-j`` and returns every job slurmctld
remembers (finished ones for ``MinJobAge``), its ``exit_code`` is a raw wait
status; there is no ``scontrol --json`` (``Key=value`` text whose values may
hold spaces); there is no accounting, so finished jobs are read from the
``jobcomp/filetxt`` log.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleetplane.errors import FleetplaneError

DEFAULT_JOBCOMP_LOG = Path("/var/log/slurm/jobcomp.log")
COMMAND_TIMEOUT = 15.0
# sbatch's words for "could not talk to slurmctld" (retry), as opposed to a refusal.
_UNREACHABLE = re.compile(r"Unable to contact slurm controller|Socket timed out|"
                          r"Zero Bytes were transmitted|Connection refused|"
                          r"Slurm backup controller in standby mode", re.IGNORECASE)
_KEY = re.compile(r"(?:^|(?<=\s))([A-Za-z][A-Za-z0-9_/:]*)=")


class SlurmError(FleetplaneError):
    """Something about Slurm the runtime cannot carry on past by itself."""


class SlurmUnavailable(SlurmError):
    """slurmctld could not be reached, a command timed out, or the tools are missing (retried)."""


class SlurmRejected(SlurmError):
    """sbatch refused the job (invalid GRES, partition, limits): not retried for this spec."""


# --- what Slurm says, parsed ----------------------------------------------------------


@dataclass(frozen=True)
class SlurmJob:
    job_id: int
    name: str
    state: str
    reason: str | None = None
    exit_code: str | None = None
    partition: str | None = None


def key_values(text: str) -> dict[str, str]:
    """``Key=value`` pairs of ``scontrol show job`` or a jobcomp line (values may hold spaces)."""
    found = list(_KEY.finditer(text))
    if not found:
        return {}
    pairs: dict[str, str] = {}
    ends = [match.start() for match in found[1:]] + [len(text)]
    for match, end in zip(found, ends, strict=True):
        pairs.setdefault(match.group(1), text[match.end():end].strip())
    return pairs


def wait_status_exit_code(status: int) -> str:
    """squeue's JSON ``exit_code`` is a wait status; Slurm prints it as ``code:signal``."""
    return f"{(status >> 8) & 0xFF}:{status & 0x7F}"


def parse_squeue_json(text: str) -> dict[int, SlurmJob]:
    """Every job of ``squeue --json`` (22.05 ignores ``-j``: filter by id afterwards)."""
    document = json.loads(text)
    errors = document.get("errors") or []
    if errors:
        raise SlurmUnavailable(f"squeue --json reported errors: {errors}")
    jobs: dict[int, SlurmJob] = {}
    for entry in document.get("jobs", []):
        code = entry.get("exit_code")
        jobs[int(entry["job_id"])] = SlurmJob(
            job_id=int(entry["job_id"]), name=str(entry.get("name", "")),
            state=str(entry.get("job_state", "")).split()[0] or "UNKNOWN",
            reason=_none(entry.get("state_reason")),
            exit_code=wait_status_exit_code(code) if isinstance(code, int) else None,
            partition=_none(entry.get("partition")),
        )
    return jobs


def parse_scontrol_job(text: str) -> SlurmJob | None:
    """One job from ``scontrol show job ID``; None when the text holds no job."""
    fields = key_values(text)
    if "JobId" not in fields or "JobState" not in fields:
        return None
    return SlurmJob(job_id=int(fields["JobId"]), name=fields.get("JobName", ""),
                    state=fields["JobState"], reason=_none(fields.get("Reason")),
                    exit_code=_none(fields.get("ExitCode")),
                    partition=_none(fields.get("Partition")))


def parse_jobcomp_line(line: str) -> SlurmJob | None:
    """One line of the ``jobcomp/filetxt`` log; None for a line that is not a job record."""
    fields = key_values(line)
    if not fields.get("JobId", "").isdigit() or "JobState" not in fields:
        return None
    return SlurmJob(job_id=int(fields["JobId"]), name=fields.get("Name", ""),
                    state=fields["JobState"], exit_code=_none(fields.get("ExitCode")),
                    partition=_none(fields.get("Partition")))


def parse_partitions(text: str) -> tuple[set[str], str | None]:
    """``sinfo -h -o %P``: the partition names and the default one (marked ``*``)."""
    names, default = set(), None
    for line in text.split():
        name = line.rstrip("*")
        names.add(name)
        if line.endswith("*"):
            default = name
    return names, default


def _none(value: Any) -> str | None:
    text = "" if value is None else str(value)
    return None if text in ("", "None", "(null)") else text


# --- the command-line tools -----------------------------------------------------------


@dataclass(frozen=True)
class SlurmCli:
    """Slurm's tools as asyncio subprocesses, each bounded by ``timeout`` seconds."""

    timeout: float = COMMAND_TIMEOUT

    async def run(self, *argv: str) -> tuple[int, str, str]:
        try:
            process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE)
        except FileNotFoundError as error:
            raise SlurmUnavailable(
                f"{argv[0]} not found on PATH: this host has no Slurm client tools "
                f"(install slurm-client, or run the agent with --runtime process)") from error
        try:
            out, err = await asyncio.wait_for(process.communicate(), self.timeout)
        except TimeoutError as error:
            process.kill()
            await process.wait()
            raise SlurmUnavailable(f"`{shlex.join(argv)}` did not answer within "
                                   f"{self.timeout:g} s (is slurmctld up? `scontrol ping`)"
                                   ) from error
        return process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")

    async def submit(self, options: list[str], script: Path) -> int:
        argv = ("sbatch", "--parsable", *options, str(script))
        code, out, err = await self.run(*argv)
        message = " ".join(line.removeprefix("sbatch: error: ").strip()
                           for line in err.splitlines() if line.strip())
        if code != 0:
            if _UNREACHABLE.search(err):
                raise SlurmUnavailable(f"sbatch could not reach slurmctld: {message}")
            raise SlurmRejected(f"sbatch refused the job: {message or f'exit code {code}'} "
                                f"(`{shlex.join(argv)}`)")
        first = out.strip().split(";")[0]
        if not first.isdigit():
            raise SlurmUnavailable(f"sbatch --parsable answered {out.strip()!r}, not a job id")
        return int(first)

    async def queue(self) -> dict[int, SlurmJob]:
        code, out, err = await self.run("squeue", "--json")
        if code != 0:
            raise SlurmUnavailable(f"squeue --json failed (exit {code}): {err.strip()}")
        try:
            return parse_squeue_json(out)
        except (ValueError, KeyError) as error:
            raise SlurmUnavailable(f"squeue --json printed something unreadable: {error}"
                                   ) from error

    async def show(self, job_id: int) -> SlurmJob | None:
        code, out, err = await self.run("scontrol", "show", "job", str(job_id))
        if code != 0:
            if "Invalid job id" in err:
                return None  # gone from slurmctld's memory (MinJobAge) or never existed
            raise SlurmUnavailable(f"scontrol show job {job_id} failed: {err.strip()}")
        return parse_scontrol_job(out)

    async def cancel(self, job_id: int) -> None:
        code, _, err = await self.run("scancel", str(job_id))
        if code != 0 and not re.search(r"Invalid job id|already completing or completed", err):
            raise SlurmUnavailable(f"scancel {job_id} failed: {err.strip()}")

    async def partitions(self) -> tuple[set[str], str | None]:
        code, out, err = await self.run("sinfo", "-h", "-o", "%P")
        if code != 0:
            raise SlurmUnavailable(f"sinfo failed: {err.strip()}")
        return parse_partitions(out)

    async def jobcomp_location(self) -> Path | None:
        """Where ``jobcomp/filetxt`` writes; None when the cluster logs finished jobs otherwise."""
        code, out, _ = await self.run("scontrol", "show", "config")
        settings = dict(re.findall(r"^(\S+)\s*=\s*(.*?)\s*$", out, re.MULTILINE))
        if code != 0:
            return DEFAULT_JOBCOMP_LOG if DEFAULT_JOBCOMP_LOG.exists() else None
        if settings.get("JobCompType") != "jobcomp/filetxt":
            return None
        return Path(settings.get("JobCompLoc") or DEFAULT_JOBCOMP_LOG)


class JobCompLog:
    """The job-completion log read incrementally; only fleetplane's jobs are kept."""

    def __init__(self, path: Path | None, prefix: str = "fp:") -> None:
        self.path = path
        self.prefix = prefix
        self.offset = 0
        self.jobs: dict[int, SlurmJob] = {}

    def refresh(self) -> None:
        if self.path is None:
            return
        try:
            with self.path.open("rb") as handle:
                if os.fstat(handle.fileno()).st_size < self.offset:
                    self.offset = 0  # rotated or truncated: read the new file from the start
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return
        complete = chunk[:chunk.rfind(b"\n") + 1]  # a line still being written waits
        self.offset += len(complete)
        for line in complete.decode(errors="replace").splitlines():
            job = parse_jobcomp_line(line)
            if job is not None and job.name.startswith(self.prefix):
                self.jobs[job.job_id] = job

    def find(self, job_id: int, name: str) -> SlurmJob | None:
        job = self.jobs.get(job_id)
        return job if job is not None and job.name == name else None
