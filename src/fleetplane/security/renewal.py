"""Renewal credentials: how an agent re-enrols after its certificate expired offline.

An agent whose certificate expired during a long partition cannot use mTLS
any more (SPIRE agents stay broken in that case, spire#1562). At enrolment
the server therefore also issues a renewal credential ``fpr_<id>_<secret>``
bound to the agent's site and id, valid for 30 days by default and
revocable. The agent keeps it next to its key and presents it with a new CSR
when its certificate has expired.

Rotation: every successful (re-)enrolment issues a new renewal credential
and revokes the previous one, so an online agent always holds a fresh one
and a copied credential stops working once the real agent renews. A
revoked credential that is presented again means two parties held it; the
server should record that as a security event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from fleetplane.security.credential import (
    CredentialKind,
    CredentialRecord,
    check_credential,
    mint,
    parse_credential,
)
from fleetplane.security.errors import TokenScopeError
from fleetplane.security.spiffe import check_name

DEFAULT_RENEWAL_TTL = timedelta(days=30)


@dataclass(frozen=True, kw_only=True)
class RenewalCredentialRecord(CredentialRecord):
    site: str
    agent_id: str


def issue_renewal_credential(
    site: str,
    agent_id: str,
    ttl: timedelta = DEFAULT_RENEWAL_TTL,
    *,
    now: datetime | None = None,
) -> tuple[str, RenewalCredentialRecord]:
    """A new renewal credential for ``agent_id`` of ``site``: ``(plaintext, record)``."""
    check_name(site, "site name")
    check_name(agent_id, "agent id")
    minted = mint(CredentialKind.RENEWAL_CREDENTIAL, ttl, now=now)
    record = RenewalCredentialRecord(
        token_id=minted.token_id,
        secret_hash=minted.secret_hash,
        created_at=minted.created_at,
        expires_at=minted.expires_at,
        site=site,
        agent_id=agent_id,
    )
    return minted.plaintext, record


def renewal_credential_id(plaintext: str) -> str:
    """The id to look the record up by; MalformedTokenError if it is no renewal credential."""
    return parse_credential(plaintext, CredentialKind.RENEWAL_CREDENTIAL).token_id


def check_renewal_credential(
    plaintext: str,
    record: RenewalCredentialRecord,
    *,
    site: str | None = None,
    agent_id: str | None = None,
    now: datetime | None = None,
) -> None:
    """Raise a TokenError unless the credential is valid, live and for this site and agent.

    Re-issue the certificate for ``record.site`` / ``record.agent_id``, not for
    what the request claims.
    """
    check_credential(CredentialKind.RENEWAL_CREDENTIAL, plaintext, record, now=now)
    if site is not None and site != record.site:
        raise TokenScopeError(
            f"renewal credential {record.token_id} is for site {record.site!r}, not {site!r}",
            token_id=record.token_id,
        )
    if agent_id is not None and agent_id != record.agent_id:
        raise TokenScopeError(
            f"renewal credential {record.token_id} is for agent {record.agent_id!r}, "
            f"not {agent_id!r}",
            token_id=record.token_id,
        )
