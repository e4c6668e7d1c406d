"""One-time bootstrap tokens that let a new agent enrol for one site.

``fpb_<id>_<secret>``, default lifetime 15 minutes. :func:`check_bootstrap_token`
decides whether a presented token may be used; making the use one-time is
the store's job, because only the database can do it atomically. The
enrolment handler does, in one transaction::

    check_bootstrap_token(plaintext, record, site=requested_site, now=now)
    csr = load_csr(body)                 # validate before spending the token
    UPDATE bootstrap_tokens SET used_at = :now, used_by = :agent
     WHERE token_id = :id AND used_at IS NULL AND revoked_at IS NULL
    -- rowcount 0: another enrolment won the race -> TokenAlreadyUsedError
    issue the certificate and the renewal credential

:meth:`BootstrapTokenRecord.consumed` gives the record as it is after that
update, for stores that write whole records.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Self

from fleetplane.errors import Problem, ValidationError
from fleetplane.security.clock import as_utc, resolve_now
from fleetplane.security.credential import (
    CredentialKind,
    CredentialRecord,
    check_credential,
    mint,
    parse_credential,
)
from fleetplane.security.errors import TokenAlreadyUsedError, TokenScopeError
from fleetplane.security.spiffe import check_name

DEFAULT_BOOTSTRAP_TTL = timedelta(minutes=15)


@dataclass(frozen=True, kw_only=True)
class BootstrapTokenRecord(CredentialRecord):
    site: str
    used_at: datetime | None = None
    used_by: str | None = None

    def consumed(self, agent_id: str, *, now: datetime | None = None) -> Self:
        """The record after ``agent_id`` enrolled with it at ``now``."""
        if self.used_at is not None:
            raise already_used(self)
        return replace(self, used_at=resolve_now(now), used_by=agent_id)


def already_used(record: BootstrapTokenRecord) -> TokenAlreadyUsedError:
    """The error for a second use (also what a store raises when its atomic consume loses)."""
    when = f" at {as_utc(record.used_at).isoformat()}" if record.used_at else ""
    by = f" by agent {record.used_by!r}" if record.used_by else ""
    return TokenAlreadyUsedError(
        f"bootstrap token {record.token_id} for site {record.site!r} was already used{when}{by}; "
        f"create a new one with 'fleetplane site bootstrap-token {record.site}'",
        token_id=record.token_id,
    )


def create_bootstrap_token(
    site: str, ttl: timedelta = DEFAULT_BOOTSTRAP_TTL, *, now: datetime | None = None
) -> tuple[str, BootstrapTokenRecord]:
    """A new one-time token for enrolling an agent of ``site``: ``(plaintext, record)``."""
    try:
        check_name(site, "site name")
    except ValueError as error:
        raise ValidationError(Problem(str(error), field_path="site")) from None
    minted = mint(CredentialKind.BOOTSTRAP_TOKEN, ttl, now=now)
    record = BootstrapTokenRecord(
        token_id=minted.token_id,
        secret_hash=minted.secret_hash,
        created_at=minted.created_at,
        expires_at=minted.expires_at,
        site=site,
    )
    return minted.plaintext, record


def bootstrap_token_id(plaintext: str) -> str:
    """The id to look the record up by; MalformedTokenError if it is no bootstrap token."""
    return parse_credential(plaintext, CredentialKind.BOOTSTRAP_TOKEN).token_id


def check_bootstrap_token(
    plaintext: str,
    record: BootstrapTokenRecord,
    *,
    site: str | None = None,
    now: datetime | None = None,
) -> None:
    """Raise a TokenError unless the token is valid, unused, live, and (if given) for ``site``."""
    check_credential(CredentialKind.BOOTSTRAP_TOKEN, plaintext, record, now=now)
    if record.used_at is not None:
        raise already_used(record)
    if site is not None and site != record.site:
        raise TokenScopeError(
            f"bootstrap token {record.token_id} is for site {record.site!r}, not {site!r}",
            token_id=record.token_id,
        )
