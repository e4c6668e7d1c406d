"""Content-addressed artifact blobs and the name+version records that point at them.

Blobs live in the store's own database, not in a directory next to it: a
PostgreSQL store is shared by several server replicas, possibly on several
hosts, and every one of them must serve every blob; backups and migrations
then cover artifacts too. A blob is a sequence of chunks of at most
:data:`CHUNK_BYTES` (one row each), so neither an upload nor a download
ever holds a whole artifact in memory.

An upload is a sequence of parts (one request each, below the API's body
limit) written as chunks owned by ``upload:<id>``; committing it hashes the
chunks in order and, when the sha256 matches the digest the client
announced, hands them to the owner ``sha256:<hex>`` in one statement.
A blob that already exists is not stored twice (the upload is dropped).
Name+version is immutable: pushing it again with the same digest is a
no-op, with another digest a conflict. A new record also logs an
``Artifact`` event (no resource row): the placement controller reads the
event log, and Workloads that named the artifact before it existed are
delivered once it does.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fleetplane.control.store.audit import AuditEntry
from fleetplane.control.store.database import read_transaction, write_transaction
from fleetplane.control.store.repository import Store
from fleetplane.errors import FleetplaneError
from fleetplane.security.canonical import format_timestamp

Document = JSON().with_variant(JSONB(), "postgresql")

CHUNK_BYTES = 1024 * 1024
# One artifact at most; a bigger one belongs in a later issue's chunked, delta-aware transport.
MAX_ARTIFACT_BYTES = 4 * 1024**3
# Uploads never committed are dropped after this long.
UPLOAD_LIFETIME = timedelta(hours=24)

DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?$")
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")
UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")
# The kind of the event log entry a new name+version record writes.
ARTIFACT_EVENT_KIND = "Artifact"


class ArtifactBase(DeclarativeBase):
    metadata = MetaData()


class ArtifactRow(ArtifactBase):
    """A named release: name+version → the digest of its blob, and the files in it."""

    __tablename__ = "fleetplane_artifacts"

    name: Mapped[str] = mapped_column(String(253), primary_key=True)
    version: Mapped[str] = mapped_column(String(128), primary_key=True)
    digest: Mapped[str] = mapped_column(String(71), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    files: Mapped[list[dict[str, Any]]] = mapped_column(Document)
    created_at: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(253))


class BlobRow(ArtifactBase):
    __tablename__ = "fleetplane_artifact_blobs"

    digest: Mapped[str] = mapped_column(String(71), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    chunks: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[str] = mapped_column(String(40))


class UploadRow(ArtifactBase):
    __tablename__ = "fleetplane_artifact_uploads"

    upload_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    created_at: Mapped[str] = mapped_column(String(40))
    created_by: Mapped[str] = mapped_column(String(253))


class ChunkRow(ArtifactBase):
    """A piece of a blob (owner ``sha256:…``) or of an upload (owner ``upload:<id>``)."""

    __tablename__ = "fleetplane_artifact_chunks"

    owner: Mapped[str] = mapped_column(String(80), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    data: Mapped[bytes] = mapped_column(LargeBinary)


ARTIFACTS: Table = ArtifactRow.__table__  # type: ignore[assignment]
BLOBS: Table = BlobRow.__table__  # type: ignore[assignment]
UPLOADS: Table = UploadRow.__table__  # type: ignore[assignment]
CHUNKS: Table = ChunkRow.__table__  # type: ignore[assignment]


class ArtifactError(FleetplaneError):
    """An artifact request the store refuses; ``code`` is the HTTP status the API answers."""

    code = 400


class UnknownUpload(ArtifactError):
    code = 404


class UnknownArtifact(ArtifactError):
    code = 404


class DigestMismatch(ArtifactError):
    code = 422


class VersionTaken(ArtifactError):
    code = 409


class TooLarge(ArtifactError):
    code = 413


@dataclass(frozen=True)
class Artifact:
    name: str
    version: str
    digest: str
    size: int
    files: list[dict[str, Any]]
    created_at: str
    created_by: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "digest": self.digest,
                "size": self.size, "files": self.files, "createdAt": self.created_at,
                "createdBy": self.created_by}


def check_name(name: str, version: str) -> None:
    if not NAME.match(name):
        raise ArtifactError(
            f"artifact name {name!r}: use 1-253 lower-case letters, digits, '.', '_' or '-', "
            "starting and ending with a letter or digit"
        )
    if not VERSION.match(version):
        raise ArtifactError(
            f"artifact version {version!r}: use 1-128 letters, digits, '.', '_', '+' or '-', "
            "starting with a letter or digit"
        )


def check_upload_id(upload_id: str) -> None:
    if not UPLOAD_ID.match(upload_id):
        raise UnknownUpload(f"upload {upload_id!r} does not exist (ids are 32 hex digits)")


def check_digest(digest: str) -> None:
    if not DIGEST.match(digest):
        raise ArtifactError(f"digest {digest!r}: must be 'sha256:' followed by 64 hex digits")


def ensure_artifact_tables(engine: Engine) -> None:
    """Create the tables when missing (stores built without migrations, as tests do)."""
    ArtifactBase.metadata.create_all(engine, checkfirst=True)


def _now() -> str:
    return format_timestamp(datetime.now(UTC))


# --- uploads ---------------------------------------------------------------------


def begin_upload(engine: Engine, actor: str) -> str:
    """A new upload id; uploads older than :data:`UPLOAD_LIFETIME` are dropped on the way."""
    upload_id = secrets.token_hex(16)
    with write_transaction(engine) as connection:
        drop_stale_uploads(connection)
        connection.execute(insert(UPLOADS), {"upload_id": upload_id, "created_at": _now(),
                                             "created_by": actor})
    return upload_id


def drop_stale_uploads(connection: Connection) -> int:
    """Drop uploads begun more than :data:`UPLOAD_LIFETIME` ago and never committed; how many."""
    cutoff = format_timestamp(datetime.now(UTC) - UPLOAD_LIFETIME)
    stale = connection.execute(
        select(UPLOADS.c.upload_id).where(UPLOADS.c.created_at < cutoff)
    ).scalars().all()
    for upload_id in stale:
        connection.execute(delete(CHUNKS).where(CHUNKS.c.owner == f"upload:{upload_id}"))
    connection.execute(delete(UPLOADS).where(UPLOADS.c.upload_id.in_(stale)))
    return len(stale)


def put_part(engine: Engine, upload_id: str, seq: int, data: bytes) -> int:
    """Store part ``seq`` (0, 1, …; re-sending one replaces it); the upload's bytes so far."""
    if len(data) > CHUNK_BYTES:
        raise TooLarge(f"part {seq} is {len(data)} bytes; send parts of at most {CHUNK_BYTES}")
    owner = f"upload:{upload_id}"
    with write_transaction(engine) as connection:
        _require_upload(connection, upload_id)
        connection.execute(delete(CHUNKS).where(CHUNKS.c.owner == owner, CHUNKS.c.seq == seq))
        total = _owned_bytes(connection, owner) + len(data)
        if total > MAX_ARTIFACT_BYTES:
            raise TooLarge(
                f"upload {upload_id} would exceed {MAX_ARTIFACT_BYTES} bytes, the largest "
                "artifact this server stores"
            )
        connection.execute(insert(CHUNKS), {"owner": owner, "seq": seq, "data": data})
    return total


def _require_upload(connection: Connection, upload_id: str) -> None:
    found = connection.execute(
        select(UPLOADS.c.upload_id).where(UPLOADS.c.upload_id == upload_id)
    ).first()
    if found is None:
        raise UnknownUpload(
            f"upload {upload_id!r} does not exist (never begun, already committed, or older "
            f"than {UPLOAD_LIFETIME}); start again with POST /api/v1/artifacts/uploads"
        )


def _owned_bytes(connection: Connection, owner: str) -> int:
    total = connection.execute(
        select(func.coalesce(func.sum(func.length(CHUNKS.c.data)), 0)).where(
            CHUNKS.c.owner == owner)
    ).scalar_one()
    return int(total)


def _hash_chunks(engine: Engine, owner: str) -> tuple[str, int, int]:
    """sha256, size and count of ``owner``'s chunks, read one at a time (contiguous from 0)."""
    with read_transaction(engine) as connection:
        seqs = connection.execute(
            select(CHUNKS.c.seq).where(CHUNKS.c.owner == owner).order_by(CHUNKS.c.seq)
        ).scalars().all()
    if list(seqs) != list(range(len(seqs))):
        missing = sorted(set(range(max(seqs, default=-1) + 1)) - set(seqs))
        raise ArtifactError(f"upload parts {missing} are missing; send them before committing")
    hasher = hashlib.sha256()
    size = 0
    for seq in seqs:
        data = read_chunk(engine, owner, seq)
        hasher.update(data)
        size += len(data)
    return "sha256:" + hasher.hexdigest(), size, len(seqs)


# --- commit, read ------------------------------------------------------------------


@dataclass(frozen=True)
class Push:
    name: str
    version: str
    digest: str
    files: list[dict[str, Any]]
    upload_id: str | None


def commit(store: Store, push: Push, actor: str) -> tuple[Artifact, bool]:
    """Record name+version → digest (verifying the upload); (artifact, created). Audited."""
    check_name(push.name, push.version)
    check_digest(push.digest)
    engine = store.engine
    existing = find(engine, push.name, push.version)
    if existing is not None:
        return _same_or_conflict(existing, push), False
    counted: tuple[str, int, int] | None = None
    if push.upload_id is not None and blob_size(engine, push.digest) is None:
        counted = _hash_chunks(engine, f"upload:{push.upload_id}")
        if counted[0] != push.digest:
            raise DigestMismatch(
                f"the uploaded bytes hash to {counted[0]}, not {push.digest} as announced; "
                "the upload was kept: re-send the parts that changed, or start again"
            )

    def write(connection: Connection) -> tuple[Artifact, bool]:
        again = find_record(connection, push.name, push.version)
        if again is not None:
            return _same_or_conflict(again, push), False
        size = _adopt_blob(connection, push, counted)
        artifact = Artifact(push.name, push.version, push.digest, size, push.files, _now(),
                            actor)
        connection.execute(insert(ARTIFACTS), {
            "name": artifact.name, "version": artifact.version, "digest": artifact.digest,
            "size": artifact.size, "files": artifact.files, "created_at": artifact.created_at,
            "created_by": actor,
        })
        store.audit.append(connection, AuditEntry(
            actor=actor, action="artifact.push", kind="Artifact",
            name=f"{push.name}:{push.version}", after_digest=push.digest,
            details={"size": size, "files": len(push.files)},
        ))
        # Workloads applied before this push wait for it: the event wakes the
        # placement controller, which derives their sites' desired state again.
        store.announce(connection, ARTIFACT_EVENT_KIND, f"{push.name}:{push.version}",
                       {"name": push.name, "version": push.version, "digest": push.digest,
                        "size": size})
        return artifact, True

    return store.run_write(write)


def _adopt_blob(connection: Connection, push: Push, counted: tuple[str, int, int] | None) -> int:
    """The blob's size; the upload's chunks become the blob's when it is new."""
    stored = connection.execute(select(BLOBS.c.size).where(BLOBS.c.digest == push.digest)).first()
    upload_owner = f"upload:{push.upload_id}"
    if stored is not None:
        if push.upload_id is not None:
            connection.execute(delete(CHUNKS).where(CHUNKS.c.owner == upload_owner))
            connection.execute(delete(UPLOADS).where(UPLOADS.c.upload_id == push.upload_id))
        return int(stored.size)
    if push.upload_id is None or counted is None:
        raise UnknownArtifact(
            f"no blob {push.digest} on this server; upload its bytes first "
            "(POST /api/v1/artifacts/uploads, then PUT the parts)"
        )
    _require_upload(connection, push.upload_id)
    _, size, chunks = counted
    connection.execute(update(CHUNKS).where(CHUNKS.c.owner == upload_owner)
                       .values(owner=push.digest))
    connection.execute(delete(UPLOADS).where(UPLOADS.c.upload_id == push.upload_id))
    connection.execute(insert(BLOBS), {"digest": push.digest, "size": size, "chunks": chunks,
                                       "created_at": _now()})
    return size


def _same_or_conflict(existing: Artifact, push: Push) -> Artifact:
    if existing.digest != push.digest:
        raise VersionTaken(
            f"artifact {push.name}:{push.version} already exists with digest {existing.digest}; "
            "versions are immutable: push under a new --version"
        )
    return existing


def find(engine: Engine, name: str, version: str) -> Artifact | None:
    with read_transaction(engine) as connection:
        return find_record(connection, name, version)


def find_record(connection: Connection, name: str, version: str) -> Artifact | None:
    row = connection.execute(
        select(ARTIFACTS).where(ARTIFACTS.c.name == name, ARTIFACTS.c.version == version)
    ).first()
    return _artifact(row) if row is not None else None


def get(engine: Engine, name: str, version: str) -> Artifact:
    found = find(engine, name, version)
    if found is None:
        raise UnknownArtifact(
            f"artifact {name}:{version} was never pushed (see `fleetplane artifact list`)"
        )
    return found


def list_artifacts(engine: Engine, name: str | None = None) -> list[Artifact]:
    query = select(ARTIFACTS).order_by(ARTIFACTS.c.name, ARTIFACTS.c.created_at)
    if name is not None:
        query = query.where(ARTIFACTS.c.name == name)
    with read_transaction(engine) as connection:
        return [_artifact(row) for row in connection.execute(query)]


def resolutions(engine: Engine) -> dict[tuple[str, str], tuple[str, int]]:
    """(name, version) → (digest, size) of every artifact: what derive resolves against."""
    query = select(ARTIFACTS.c.name, ARTIFACTS.c.version, ARTIFACTS.c.digest, ARTIFACTS.c.size)
    with read_transaction(engine) as connection:
        return {(row.name, row.version): (row.digest, int(row.size))
                for row in connection.execute(query)}


def blob_size(engine: Engine, digest: str) -> int | None:
    with read_transaction(engine) as connection:
        row = connection.execute(select(BLOBS.c.size).where(BLOBS.c.digest == digest)).first()
    return int(row.size) if row is not None else None


def read_chunk(engine: Engine, owner: str, seq: int) -> bytes:
    with read_transaction(engine) as connection:
        data = connection.execute(
            select(CHUNKS.c.data).where(CHUNKS.c.owner == owner, CHUNKS.c.seq == seq)
        ).scalar_one()
    return bytes(data)


def blob_chunks(engine: Engine, digest: str) -> Iterator[bytes]:
    """The blob's bytes, a chunk per read transaction (a slow reader holds no snapshot)."""
    with read_transaction(engine) as connection:
        count = connection.execute(
            select(BLOBS.c.chunks).where(BLOBS.c.digest == digest)
        ).scalar_one_or_none()
    if count is None:
        raise UnknownArtifact(f"no blob {digest} on this server")
    for seq in range(int(count)):
        yield read_chunk(engine, digest, seq)


def _artifact(row: Any) -> Artifact:
    return Artifact(row.name, row.version, row.digest, int(row.size), list(row.files or []),
                    row.created_at, row.created_by)
