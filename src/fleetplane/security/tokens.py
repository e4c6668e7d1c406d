"""API tokens for people: ``fp_<id>_<secret>``, shown once, stored hashed.

The flow: :func:`create_token` returns the plaintext (print it once) and a
:class:`TokenRecord` to store. On a request, :func:`token_id` gives the id to
look the record up by and :func:`verify_token` returns the
:class:`~fleetplane.security.rbac.Principal` or raises a ``TokenError``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from fleetplane.errors import Problem, ValidationError, did_you_mean
from fleetplane.security.credential import (
    CredentialKind,
    CredentialRecord,
    check_credential,
    mint,
    parse_credential,
)
from fleetplane.security.rbac import PERSON_ROLES, Principal, Role

# People are named by login or e-mail address; keep it printable and short.
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")


@dataclass(frozen=True, kw_only=True)
class TokenRecord(CredentialRecord):
    name: str
    role: Role

    def principal(self) -> Principal:
        return Principal(name=self.name, role=self.role)


def _person_role(role: Role | str) -> Role:
    names = sorted(r.value for r in PERSON_ROLES)
    try:
        value = Role(role)
    except ValueError:
        value = None
    if value is None or value not in PERSON_ROLES:
        raise ValidationError(
            Problem(
                f"role {str(role)!r} cannot be given to an API token",
                field_path="role",
                hint=did_you_mean(str(role), names) or f"one of {', '.join(names)}",
            )
        )
    return value


def create_token(
    name: str, role: Role | str, ttl: timedelta, *, now: datetime | None = None
) -> tuple[str, TokenRecord]:
    """A new API token: ``(plaintext, record)``; only the record may be stored."""
    if not _TOKEN_NAME.match(name):
        raise ValidationError(
            Problem(
                f"token name {name!r} must be 1-128 letters, digits or '._@+-', "
                "starting with a letter or digit",
                field_path="name",
                hint="use the person's login or e-mail address",
            )
        )
    person_role = _person_role(role)
    minted = mint(CredentialKind.API_TOKEN, ttl, now=now)
    record = TokenRecord(
        token_id=minted.token_id,
        secret_hash=minted.secret_hash,
        created_at=minted.created_at,
        expires_at=minted.expires_at,
        name=name,
        role=person_role,
    )
    return minted.plaintext, record


def token_id(plaintext: str) -> str:
    """The id to look the token's record up by; MalformedTokenError if it is no API token."""
    return parse_credential(plaintext, CredentialKind.API_TOKEN).token_id


def verify_token(plaintext: str, record: TokenRecord, *, now: datetime | None = None) -> Principal:
    """The principal the token stands for, or a TokenError (invalid, revoked, expired)."""
    check_credential(CredentialKind.API_TOKEN, plaintext, record, now=now)
    return record.principal()
