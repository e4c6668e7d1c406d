"""Memory limits for replica processes: a cgroup where the host lets us, else an rlimit.

A memory cgroup (v2 ``memory.max`` or v1 ``memory.limit_in_bytes``) is the
real thing: the kernel OOM-kills a replica that exceeds it and counts the
kill (``memory.events`` / ``memory.oom_control``: ``oom_kill N``), so the agent
can report *why* the replica died. Each replica gets its own child cgroup of
the agent's own (``fleetplane-replicas/<workload>-<index>-<pid>``), joined
right after the start (``preexec_fn`` is unsafe in a process with threads);
in v1 ``memory.move_charge_at_immigrate`` carries over what the child
allocated before the move. Without a writable memory cgroup (containers,
other OSes) the data segment is capped with ``prlimit(RLIMIT_DATA)``: an
allocation beyond it fails inside the replica, which usually exits.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("fleetplane.agent")

CGROUP_ROOT = Path("/sys/fs/cgroup")
GROUP = "fleetplane-replicas"


@dataclass(frozen=True)
class MemoryCgroups:
    """Where replica cgroups go, and which cgroup version's files to use."""

    parent: Path
    version: int

    @classmethod
    def find(cls, root: Path = CGROUP_ROOT) -> MemoryCgroups | None:
        for version, base in ((2, root), (1, root / "memory")):
            own = _own_cgroup(version)
            if own is None or not _is_memory_hierarchy(version, base):
                continue
            parent = base / own.lstrip("/") / GROUP
            try:
                parent.mkdir(exist_ok=True)
                if version == 2:
                    # Children get the memory controller only if the parent hands it down.
                    (parent / "cgroup.subtree_control").write_text("+memory")
            except OSError:
                continue
            return cls(parent, version)
        return None

    def path(self, workload: str, index: int, pid: int) -> Path:
        return self.parent / f"{workload}-{index}-{pid}"

    def confine(self, workload: str, index: int, pid: int, limit: int) -> bool:
        group = self.path(workload, index, pid)
        try:
            group.mkdir(exist_ok=True)
            if self.version == 2:
                (group / "memory.max").write_text(str(limit))
                (group / "memory.swap.max").write_text("0")
            else:
                (group / "memory.limit_in_bytes").write_text(str(limit))
                _write_if_present(group / "memory.memsw.limit_in_bytes", str(limit))
                _write_if_present(group / "memory.move_charge_at_immigrate", "3")
            (group / "cgroup.procs").write_text(str(pid))
        except OSError as error:
            log.warning("cannot put pid %d in memory cgroup %s (%s)", pid, group, error)
            return False
        return True

    def oom_kills(self, workload: str, index: int, pid: int) -> int:
        group = self.path(workload, index, pid)
        name = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            text = (group / name).read_text()
        except OSError:
            return 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def remove(self, workload: str, index: int, pid: int) -> None:
        try:
            self.path(workload, index, pid).rmdir()
        except OSError:
            return  # still has a process (re-adopted elsewhere) or never existed


def limit_with_rlimit(pid: int, memory_bytes: int) -> bool:
    try:
        resource.prlimit(pid, resource.RLIMIT_DATA, (memory_bytes, memory_bytes))
    except (OSError, ValueError) as error:
        log.warning("cannot limit memory of pid %d (%s); running it without a limit", pid, error)
        return False
    return True


def _own_cgroup(version: int) -> str | None:
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if (version == 2 and controllers == "") or (
            version == 1 and "memory" in controllers.split(",")
        ):
            return path
    return None


def _is_memory_hierarchy(version: int, base: Path) -> bool:
    if version == 2:
        controllers = base / "cgroup.controllers"
        return controllers.is_file() and "memory" in controllers.read_text().split()
    return (base / "memory.limit_in_bytes").is_file()


def _write_if_present(path: Path, value: str) -> None:
    if path.exists():
        try:
            path.write_text(value)
        except OSError:
            return
