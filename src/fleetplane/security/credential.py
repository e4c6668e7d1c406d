"""What API tokens, bootstrap tokens and renewal credentials share.

A credential is ``<prefix>_<id>_<secret>``: the id (80 random bits) is not
secret and is how the store finds the record; the secret is 256 random bits
and the store keeps only its SHA-256 hash.

Why not bcrypt/argon2: those are for passwords, which have little entropy
and must be made expensive to guess offline. A 256-bit random secret cannot
be guessed whatever the hash costs, so a fast hash loses nothing — and a slow
one would make every authenticated request slow and hand attackers a cheap
CPU-exhaustion lever. The hash input names the credential kind and id, so a
hash copied between rows or kinds never matches. Comparisons are constant
time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Self

from fleetplane.errors import Problem, ValidationError
from fleetplane.security.clock import as_utc, resolve_now
from fleetplane.security.errors import (
    ExpiredTokenError,
    InvalidTokenError,
    MalformedTokenError,
    RevokedTokenError,
)

_ID_BYTES = 10
_SECRET_BYTES = 32
_HASH_SCHEME = "sha256"


class CredentialKind(StrEnum):
    """The prefix names the kind, so a leaked string is recognisable (and redactable)."""

    API_TOKEN = "fp"
    BOOTSTRAP_TOKEN = "fpb"
    RENEWAL_CREDENTIAL = "fpr"


_LABEL = {
    CredentialKind.API_TOKEN: "API token",
    CredentialKind.BOOTSTRAP_TOKEN: "bootstrap token",
    CredentialKind.RENEWAL_CREDENTIAL: "renewal credential",
}
# Base32 without padding: 16 characters of id, 52 of secret.
_FORMAT = re.compile(r"^(fp|fpb|fpr)_([a-z2-7]{16})_([a-z2-7]{52})$")


def _base32(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").lower()


@dataclass(frozen=True, slots=True)
class ParsedCredential:
    kind: CredentialKind
    token_id: str
    secret: str = field(repr=False)


def parse_credential(text: str, kind: CredentialKind) -> ParsedCredential:
    """Split a presented credential; MalformedTokenError when it is not of ``kind``.

    The store calls this to get the id it looks the record up by.
    """
    label = _LABEL[kind]
    match = _FORMAT.match(text.strip())
    if match is None:
        raise MalformedTokenError(
            f"not a fleetplane {label}: expected '{kind.value}_<16 chars>_<52 chars>' "
            "(copy the whole value that was printed when it was created)"
        )
    prefix, token_id, secret = match.groups()
    if prefix != kind.value:
        other = _LABEL[CredentialKind(prefix)]
        raise MalformedTokenError(
            f"this is a {other} (prefix '{prefix}_'); {label}s start with '{kind.value}_'",
            token_id=token_id,
        )
    return ParsedCredential(kind, token_id, secret)


def hash_secret(kind: CredentialKind, token_id: str, secret: str) -> str:
    digest = hashlib.sha256(
        b"fleetplane-credential\0" + f"{kind.value}\0{token_id}\0{secret}".encode("ascii")
    ).hexdigest()
    return f"{_HASH_SCHEME}:{digest}"


@dataclass(frozen=True, kw_only=True)
class CredentialRecord:
    """What the store keeps about a credential: never the secret, only its hash."""

    token_id: str
    secret_hash: str = field(repr=False)
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None = None

    def revoke(self, *, now: datetime | None = None) -> Self:
        """A copy revoked at ``now``; revoking twice keeps the first time."""
        if self.revoked_at is not None:
            return self
        return replace(self, revoked_at=resolve_now(now))

    def is_expired(self, *, now: datetime | None = None) -> bool:
        return resolve_now(now) >= as_utc(self.expires_at)


@dataclass(frozen=True, slots=True)
class Minted:
    plaintext: str = field(repr=False)
    token_id: str
    secret_hash: str = field(repr=False)
    created_at: datetime
    expires_at: datetime


def mint(kind: CredentialKind, ttl: timedelta, *, now: datetime | None = None) -> Minted:
    """A fresh random credential of ``kind`` valid for ``ttl``."""
    if ttl <= timedelta(0):
        raise ValidationError(
            Problem(
                f"{_LABEL[kind]} lifetime must be positive, got {ttl}",
                field_path="ttl",
                hint="e.g. 15m, 24h or 30d",
            )
        )
    created = resolve_now(now)
    token_id = _base32(secrets.token_bytes(_ID_BYTES))
    secret = _base32(secrets.token_bytes(_SECRET_BYTES))
    return Minted(
        plaintext=f"{kind.value}_{token_id}_{secret}",
        token_id=token_id,
        secret_hash=hash_secret(kind, token_id, secret),
        created_at=created,
        expires_at=created + ttl,
    )


def check_credential(
    kind: CredentialKind, plaintext: str, record: CredentialRecord, *, now: datetime | None = None
) -> None:
    """Raise a TokenError unless ``plaintext`` matches ``record`` and is live at ``now``.

    The secret is checked before revocation and expiry so that someone
    without the secret learns nothing about the record's state.
    """
    label = _LABEL[kind]
    parsed = parse_credential(plaintext, kind)
    expected = hash_secret(kind, parsed.token_id, parsed.secret)
    same_id = hmac.compare_digest(parsed.token_id, record.token_id)
    if not (hmac.compare_digest(expected, record.secret_hash) and same_id):
        raise InvalidTokenError(
            f"{label} {parsed.token_id} is not valid (wrong secret); ask for a new one",
            token_id=parsed.token_id,
        )
    moment = resolve_now(now)
    if record.revoked_at is not None:
        raise RevokedTokenError(
            f"{label} {record.token_id} was revoked at {as_utc(record.revoked_at).isoformat()}",
            token_id=record.token_id,
        )
    if moment >= as_utc(record.expires_at):
        raise ExpiredTokenError(
            f"{label} {record.token_id} expired at {as_utc(record.expires_at).isoformat()}; "
            "ask for a new one",
            token_id=record.token_id,
        )
