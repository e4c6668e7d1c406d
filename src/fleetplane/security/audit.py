"""The hash-chained audit log.

Each record carries the hash of the record before it and a hash over its
own contents (including that link and its sequence number), so editing,
deleting, reordering or inserting a row breaks the chain at that row;
:func:`verify` names the first sequence number where it breaks.

Threat model (details in docs/security.md):

* Unkeyed (``sha256:``): detects accidental corruption and naive edits. A
  writer with database access can recompute every later hash, so alone it
  does not stop a deliberate forger.
* Keyed (``hmac-sha256:<key id>:``): the hash is an HMAC under a key the
  server holds outside the database. A database writer without the key
  cannot produce a valid record, so any change is detected. Verification
  with a keyring refuses unkeyed records (no downgrade).
* Deleting the newest records leaves a valid shorter chain. Pass
  externally kept checkpoints (``anchors``, e.g. the head exported daily)
  to :func:`verify` to detect truncation.

Appends must be serialised by the store (a unique constraint on ``seq``
turns a concurrent append into a retryable conflict instead of a fork).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any, Self

from fleetplane.security.canonical import canonical_json, format_timestamp, to_json_value
from fleetplane.security.clock import as_utc
from fleetplane.security.keyring import Key, Keyring

# prev_hash of the first record.
GENESIS_HASH = "genesis"
_PLAIN = "sha256"
_KEYED = "hmac-sha256"
_DOMAIN = b"fleetplane-audit-v1\0"


@dataclass(frozen=True, kw_only=True)
class AuditEvent:
    """What happened: who (actor) did what (action) to which object (kind/name), and when.

    ``before_digest``/``after_digest`` are :func:`fleetplane.security.canonical.digest`
    values of the object before and after (None for create/delete), so the
    log proves what changed without holding the documents themselves.
    """

    time: datetime
    actor: str
    action: str
    kind: str
    name: str
    before_digest: str | None = None
    after_digest: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class AuditRecord(AuditEvent):
    """An event in the chain: its sequence number, the previous hash and its own hash."""

    seq: int
    prev_hash: str
    hash: str

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values (time as canonical text), for storage and output."""
        data: dict[str, Any] = to_json_value({f.name: getattr(self, f.name) for f in fields(self)})
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        values = dict(data)
        time = values.pop("time")
        return cls(
            time=as_utc(datetime.fromisoformat(time) if isinstance(time, str) else time),
            **values,
        )


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A record's (seq, hash) kept outside the store, to anchor verification."""

    seq: int
    hash: str

    @classmethod
    def of(cls, record: AuditRecord) -> Checkpoint:
        return cls(record.seq, record.hash)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    head: Checkpoint | None = None

    def __bool__(self) -> bool:
        return self.ok


def _compute_hash(record_fields: Mapping[str, Any], key: Key | None) -> str:
    body = canonical_json(record_fields)
    if key is None:
        return f"{_PLAIN}:" + hashlib.sha256(_DOMAIN + body).hexdigest()
    mac = hmac.new(key.material, _DOMAIN + body, hashlib.sha256).hexdigest()
    return f"{_KEYED}:{key.key_id}:{mac}"


def append(prev: AuditRecord | None, event: AuditEvent, *, key: Key | None = None) -> AuditRecord:
    """The record that follows ``prev`` (None for the first) with ``event``'s contents.

    ``details`` is normalised to plain JSON values first, so the returned
    record is exactly what was hashed and survives a store round trip.
    """
    unsealed = AuditRecord(
        seq=1 if prev is None else prev.seq + 1,
        time=as_utc(event.time),
        actor=event.actor,
        action=event.action,
        kind=event.kind,
        name=event.name,
        before_digest=event.before_digest,
        after_digest=event.after_digest,
        details=to_json_value(event.details, "details"),
        prev_hash=GENESIS_HASH if prev is None else prev.hash,
        hash="",
    )
    return replace(unsealed, hash=_compute_hash(record_fields(unsealed), key))


def record_fields(record: AuditRecord) -> dict[str, Any]:
    """The fields a record's hash covers, as plain values (what stores persist, plus ``hash``)."""
    return {
        "seq": record.seq,
        "time": format_timestamp(record.time),
        "actor": record.actor,
        "action": record.action,
        "kind": record.kind,
        "name": record.name,
        "before_digest": record.before_digest,
        "after_digest": record.after_digest,
        "details": record.details,
        "prev_hash": record.prev_hash,
    }


def _hash_problem(record: AuditRecord, keyring: Keyring | None) -> str | None:
    """Why ``record``'s own hash is wrong, or None when it matches its contents."""
    scheme, _, rest = record.hash.partition(":")
    key: Key | None = None
    if scheme == _KEYED:
        key_id = rest.partition(":")[0]
        if keyring is None:
            return "is HMAC-keyed; verify with the audit key"
        key = keyring.get(key_id)
        if key is None:
            return f"is keyed with key {key_id!r}, which the audit keyring does not hold"
    elif scheme == _PLAIN:
        if keyring is not None:
            return "is not keyed although the log is verified with a key (rewritten without it?)"
    else:
        return f"has a hash of unknown scheme {scheme!r}"
    try:
        expected = _compute_hash(record_fields(record), key)
    except TypeError as error:
        return f"holds a value that is not JSON ({error})"
    if not hmac.compare_digest(expected, record.hash):
        return "was modified: its hash does not match its contents"
    return None


def verify(
    records: Iterable[AuditRecord],
    *,
    keyring: Keyring | None = None,
    start: Checkpoint | None = None,
    anchors: Iterable[Checkpoint] = (),
) -> VerifyResult:
    """Check a chain given in ``seq`` order; the result names the first bad seq.

    ``start`` is the record just before the first one given (to verify a
    pruned log or a range); by default the chain must start at seq 1.
    ``anchors`` are checkpoints kept outside the store: each must match the
    record with its seq, which catches truncation and a chain recomputed by
    someone holding the key or writing unkeyed hashes.
    """
    expected_seq = 1 if start is None else start.seq + 1
    prev_hash = GENESIS_HASH if start is None else start.hash
    pending = {anchor.seq: anchor for anchor in anchors}
    checked = 0
    head = start
    for record in records:
        where = f"record {expected_seq}"
        if record.seq != expected_seq:
            problem = f"{where} is missing or out of order (found seq {record.seq} in its place)"
            return VerifyResult(False, checked, expected_seq, problem, head)
        if record.prev_hash != prev_hash:
            problem = (
                f"{where} does not link to the record before it "
                "(that record was changed, removed or inserted)"
            )
            return VerifyResult(False, checked, expected_seq, problem, head)
        hash_problem = _hash_problem(record, keyring)
        if hash_problem is not None:
            return VerifyResult(False, checked, expected_seq, f"{where} {hash_problem}", head)
        anchor = pending.pop(record.seq, None)
        if anchor is not None and not hmac.compare_digest(anchor.hash, record.hash):
            problem = f"{where} differs from the checkpoint kept for it (the chain was rewritten)"
            return VerifyResult(False, checked, expected_seq, problem, head)
        checked += 1
        head = Checkpoint.of(record)
        prev_hash = record.hash
        expected_seq += 1
    missing = sorted(seq for seq in pending if seq >= expected_seq)
    if missing:
        problem = (
            f"the log ends at record {expected_seq - 1} but a checkpoint exists for record "
            f"{missing[0]} (records were deleted from the end)"
        )
        return VerifyResult(False, checked, expected_seq, problem, head)
    return VerifyResult(True, checked, None, None, head)
