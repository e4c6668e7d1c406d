"""Removing artifacts: a name+version record on request, and blobs nothing names any more.

A record goes only when no Workload runs that release: deleting what a
Workload names would leave its sites waiting for a release that no longer
exists. A blob goes only when neither a record nor any site's current
desired state names its digest: sites may still be moving off a release
after its Workloads changed (the placement controller debounces, and an
agent may be partitioned), and the agent port serves only blobs a site's
desired state names — so the bytes must outlive the record until no site
needs them. :func:`collect_garbage` removes the blobs (and uploads older
than ``UPLOAD_LIFETIME``) that were kept for that reason once they are
free; a delete runs it for its own digest at once.

The Workload and desired-state scans are read before the write
transaction, so a Workload applied in between that names the deleted
release waits for it exactly like one naming a version never pushed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, delete, func, select

from fleetplane.control.controllers.derive import referenced_artifacts
from fleetplane.control.store.artifacts import (
    ARTIFACTS,
    BLOBS,
    CHUNKS,
    Artifact,
    ArtifactError,
    UnknownArtifact,
    check_name,
    drop_stale_uploads,
    find_record,
)
from fleetplane.control.store.audit import AuditEntry
from fleetplane.control.store.repository import Store

# At most this many names in an error message; the rest are counted.
SHOWN_NAMES = 5


class ArtifactInUse(ArtifactError):
    code = 409


@dataclass(frozen=True)
class Removal:
    """What a delete or a collection removed, and what it had to keep."""

    artifact: Artifact | None
    blobs_removed: list[str]
    bytes_freed: int
    # Digests kept because a site's current desired state still names them.
    blobs_kept: list[str]
    uploads_dropped: int

    def to_json(self) -> dict[str, object]:
        document: dict[str, object] = {
            "blobsRemoved": self.blobs_removed,
            "bytesFreed": self.bytes_freed,
            "blobsKeptForSites": self.blobs_kept,
            "uploadsDropped": self.uploads_dropped,
        }
        if self.artifact is not None:
            document["deleted"] = self.artifact.to_json()
        return document


def delete_artifact(store: Store, name: str, version: str, actor: str) -> Removal:
    """Delete the record name+version (refused while a Workload runs it); free an unused blob."""
    check_name(name, version)
    users = _workloads_running(store, name, version)
    if users:
        raise ArtifactInUse(
            f"artifact {name}:{version} is run by Workload {_names(users)}; point them at "
            "another version (spec.artifact) or delete them, then delete the artifact"
        )
    named_by_sites = _digests_named_by_sites(store)

    def write(connection: Connection) -> Removal:
        found = find_record(connection, name, version)
        if found is None:
            raise UnknownArtifact(
                f"artifact {name}:{version} does not exist (see `fleetplane artifact list`)"
            )
        connection.execute(
            delete(ARTIFACTS).where(ARTIFACTS.c.name == name, ARTIFACTS.c.version == version)
        )
        removed, freed, kept = _free_blobs(connection, [found.digest], named_by_sites)
        store.audit.append(connection, AuditEntry(
            actor=actor, action="artifact.delete", kind="Artifact", name=f"{name}:{version}",
            before_digest=found.digest,
            details={"blobRemoved": bool(removed), "bytesFreed": freed,
                     "keptForSites": bool(kept)},
        ))
        return Removal(found, removed, freed, kept, 0)

    return store.run_write(write)


def collect_garbage(store: Store, actor: str) -> Removal:
    """Remove every blob no record or desired state names, and uploads past their lifetime."""
    named_by_sites = _digests_named_by_sites(store)

    def write(connection: Connection) -> Removal:
        unrecorded = connection.execute(
            select(BLOBS.c.digest).where(BLOBS.c.digest.not_in(select(ARTIFACTS.c.digest)))
        ).scalars().all()
        removed, freed, kept = _free_blobs(connection, unrecorded, named_by_sites)
        dropped = drop_stale_uploads(connection)
        if removed or dropped:
            store.audit.append(connection, AuditEntry(
                actor=actor, action="artifact.gc", kind="Artifact", name="",
                details={"blobsRemoved": len(removed), "bytesFreed": freed,
                         "uploadsDropped": dropped},
            ))
        return Removal(None, removed, freed, kept, dropped)

    return store.run_write(write)


def _free_blobs(
    connection: Connection, digests: Iterable[str], named_by_sites: set[str]
) -> tuple[list[str], int, list[str]]:
    """Delete the blobs in ``digests`` no record and no site names: (removed, bytes, kept)."""
    removed: list[str] = []
    kept: list[str] = []
    freed = 0
    for digest in sorted(set(digests)):
        still_recorded = connection.execute(
            select(func.count()).select_from(ARTIFACTS).where(ARTIFACTS.c.digest == digest)
        ).scalar_one()
        if still_recorded:
            continue
        if digest in named_by_sites:
            kept.append(digest)
            continue
        size = connection.execute(
            select(BLOBS.c.size).where(BLOBS.c.digest == digest)
        ).scalar_one_or_none()
        if size is None:
            continue
        connection.execute(delete(CHUNKS).where(CHUNKS.c.owner == digest))
        connection.execute(delete(BLOBS).where(BLOBS.c.digest == digest))
        removed.append(digest)
        freed += int(size)
    return removed, freed, kept


def _workloads_running(store: Store, name: str, version: str) -> list[str]:
    workloads, _ = store.list_resources("Workload")
    wanted = {"name": name, "version": version}
    return [item.name for item in workloads if item.spec.get("artifact") == wanted]


def _digests_named_by_sites(store: Store) -> set[str]:
    states, _ = store.list_resources("SiteDesiredState")
    named: set[str] = set()
    for state in states:
        named |= referenced_artifacts(state.spec.get("workloads", []))
    return named


def _names(names: list[str]) -> str:
    shown = ", ".join(sorted(names)[:SHOWN_NAMES])
    more = len(names) - SHOWN_NAMES
    return shown + (f" and {more} more" if more > 0 else "")
