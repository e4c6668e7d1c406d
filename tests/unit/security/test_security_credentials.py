"""API tokens, bootstrap tokens and renewal credentials."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import pytest

from fleetplane.errors import ValidationError
from fleetplane.security import (
    BootstrapTokenRecord,
    ExpiredTokenError,
    InvalidTokenError,
    MalformedTokenError,
    RevokedTokenError,
    Role,
    TokenAlreadyUsedError,
    TokenScopeError,
    already_used,
    bootstrap_token_id,
    check_bootstrap_token,
    check_renewal_credential,
    create_bootstrap_token,
    create_token,
    issue_renewal_credential,
    renewal_credential_id,
    token_id,
    verify_token,
)
from fleetplane.security.credential import CredentialKind, hash_secret


def test_api_token_round_trip(now: datetime) -> None:
    plaintext, record = create_token("alice@example.com", "viewer", timedelta(days=30), now=now)
    assert plaintext.startswith(f"fp_{record.token_id}_")
    assert len(plaintext) == 3 + 16 + 1 + 52
    assert token_id(plaintext) == record.token_id
    principal = verify_token(plaintext, record, now=now + timedelta(days=29))
    assert (principal.name, principal.role, principal.site) == (
        "alice@example.com",
        Role.VIEWER,
        None,
    )
    assert record.expires_at == now + timedelta(days=30)


def test_record_holds_only_a_hash(now: datetime) -> None:
    plaintext, record = create_token("alice", Role.ADMIN, timedelta(hours=1), now=now)
    secret = plaintext.rsplit("_", 1)[1]
    values = [str(v) for v in dataclasses.asdict(record).values()]
    assert not any(secret in value for value in values)
    assert record.secret_hash.startswith("sha256:")
    assert secret not in repr(record) and record.secret_hash not in repr(record)


def test_tokens_are_unique(now: datetime) -> None:
    tokens = {create_token("a", "viewer", timedelta(hours=1), now=now)[0] for _ in range(50)}
    assert len(tokens) == 50


def test_wrong_secret_is_invalid(now: datetime) -> None:
    plaintext, record = create_token("alice", "operator", timedelta(hours=1), now=now)
    prefix, _, secret = plaintext.rpartition("_")
    flipped = prefix + "_" + ("a" if secret[0] != "a" else "b") + secret[1:]
    with pytest.raises(InvalidTokenError) as caught:
        verify_token(flipped, record, now=now)
    assert caught.value.reason == "invalid"
    assert caught.value.token_id == record.token_id
    assert secret not in str(caught.value)


def test_token_of_another_record_is_invalid(now: datetime) -> None:
    plaintext, _ = create_token("alice", "operator", timedelta(hours=1), now=now)
    _, other = create_token("bob", "admin", timedelta(hours=1), now=now)
    with pytest.raises(InvalidTokenError):
        verify_token(plaintext, other, now=now)


def test_hash_copied_from_another_row_does_not_match(now: datetime) -> None:
    plaintext, record = create_token("alice", "viewer", timedelta(hours=1), now=now)
    parsed_secret = plaintext.rsplit("_", 1)[1]
    # Same secret under another id or kind hashes differently (domain separation).
    assert hash_secret(CredentialKind.API_TOKEN, "x" * 16, parsed_secret) != record.secret_hash
    assert (
        hash_secret(CredentialKind.BOOTSTRAP_TOKEN, record.token_id, parsed_secret)
        != record.secret_hash
    )


def test_expiry_boundary(now: datetime) -> None:
    plaintext, record = create_token("alice", "viewer", timedelta(hours=1), now=now)
    verify_token(plaintext, record, now=now + timedelta(minutes=59, seconds=59))
    with pytest.raises(ExpiredTokenError, match="expired at 2026-03-01T13:00:00") as caught:
        verify_token(plaintext, record, now=now + timedelta(hours=1))
    assert caught.value.reason == "expired"
    assert record.is_expired(now=now + timedelta(hours=1))


def test_revocation(now: datetime) -> None:
    plaintext, record = create_token("alice", "viewer", timedelta(hours=1), now=now)
    revoked = record.revoke(now=now + timedelta(minutes=5))
    assert revoked.revoke(now=now + timedelta(minutes=9)).revoked_at == revoked.revoked_at
    verify_token(plaintext, record, now=now)
    with pytest.raises(RevokedTokenError, match="revoked at 2026-03-01T12:05:00"):
        verify_token(plaintext, revoked, now=now + timedelta(minutes=6))


def test_wrong_secret_is_reported_before_revocation_or_expiry(now: datetime) -> None:
    plaintext, record = create_token("alice", "viewer", timedelta(hours=1), now=now)
    forged = plaintext[:-1] + ("a" if plaintext[-1] != "a" else "b")
    with pytest.raises(InvalidTokenError):
        verify_token(forged, record.revoke(now=now), now=now + timedelta(days=1))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not a fleetplane API token"),
        ("Bearer xyz", "not a fleetplane API token"),
        ("fp_abc_def", "not a fleetplane API token"),
        ("fp_" + "A" * 16 + "_" + "a" * 52, "not a fleetplane API token"),
        (
            "fpb_" + "a" * 16 + "_" + "a" * 52,
            r"this is a bootstrap token \(prefix 'fpb_'\); API tokens start with 'fp_'",
        ),
    ],
)
def test_malformed_tokens(text: str, message: str) -> None:
    with pytest.raises(MalformedTokenError, match=message) as caught:
        token_id(text)
    assert caught.value.reason == "malformed"


def test_surrounding_whitespace_is_tolerated(now: datetime) -> None:
    plaintext, record = create_token("alice", "viewer", timedelta(hours=1), now=now)
    verify_token(f"  {plaintext}\n", record, now=now)


@pytest.mark.parametrize(
    ("name", "role", "ttl", "field"),
    [
        ("alice", "agent", timedelta(hours=1), "role"),
        ("alice", "controller", timedelta(hours=1), "role"),
        ("alice", "viewr", timedelta(hours=1), "role"),
        ("", "viewer", timedelta(hours=1), "name"),
        ("al ice", "viewer", timedelta(hours=1), "name"),
        ("alice", "viewer", timedelta(0), "ttl"),
        ("alice", "viewer", timedelta(seconds=-1), "ttl"),
    ],
)
def test_create_token_rejects_bad_input(name: str, role: str, ttl: timedelta, field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        create_token(name, role, ttl)
    assert caught.value.problems[0].field_path == field


def test_misspelled_role_gets_a_suggestion() -> None:
    with pytest.raises(ValidationError, match="did you mean 'viewer'"):
        create_token("alice", "viewr", timedelta(hours=1))


# --- bootstrap tokens -------------------------------------------------------------


def test_bootstrap_token_one_time_semantics(now: datetime) -> None:
    plaintext, record = create_bootstrap_token("store-012", now=now)
    assert plaintext.startswith("fpb_")
    assert bootstrap_token_id(plaintext) == record.token_id
    assert record.expires_at == now + timedelta(minutes=15)
    check_bootstrap_token(plaintext, record, site="store-012", now=now)
    # The store's atomic consume turns the record into this:
    used = record.consumed("a1", now=now + timedelta(minutes=1))
    assert (used.used_by, used.used_at) == ("a1", now + timedelta(minutes=1))
    with pytest.raises(TokenAlreadyUsedError, match=r"already used at .* by agent 'a1'") as caught:
        check_bootstrap_token(plaintext, used, site="store-012", now=now + timedelta(minutes=2))
    assert caught.value.reason == "used"
    with pytest.raises(TokenAlreadyUsedError):
        used.consumed("a2", now=now)


def test_bootstrap_token_is_scoped_to_its_site(now: datetime) -> None:
    plaintext, record = create_bootstrap_token("store-012", now=now)
    with pytest.raises(TokenScopeError, match="is for site 'store-012', not 'store-013'"):
        check_bootstrap_token(plaintext, record, site="store-013", now=now)


def test_bootstrap_token_expires_and_can_be_revoked(now: datetime) -> None:
    plaintext, record = create_bootstrap_token("store-012", timedelta(minutes=5), now=now)
    with pytest.raises(ExpiredTokenError):
        check_bootstrap_token(plaintext, record, now=now + timedelta(minutes=5))
    with pytest.raises(RevokedTokenError):
        check_bootstrap_token(plaintext, record.revoke(now=now), now=now)


def test_bootstrap_and_api_tokens_are_not_interchangeable(now: datetime) -> None:
    api_plaintext, api_record = create_token("alice", "admin", timedelta(hours=1), now=now)
    boot_plaintext, boot_record = create_bootstrap_token("s", now=now)
    with pytest.raises(MalformedTokenError):
        check_bootstrap_token(api_plaintext, boot_record, now=now)
    with pytest.raises(MalformedTokenError):
        verify_token(boot_plaintext, api_record, now=now)


def test_bootstrap_token_site_must_be_a_name(now: datetime) -> None:
    with pytest.raises(ValidationError) as caught:
        create_bootstrap_token("Store 12", now=now)
    assert caught.value.problems[0].field_path == "site"


def test_already_used_error_for_a_lost_race(now: datetime) -> None:
    _, record = create_bootstrap_token("store-012", now=now)
    error = already_used(record)
    assert isinstance(error, TokenAlreadyUsedError)
    assert "fleetplane site bootstrap-token store-012" in str(error)


# --- renewal credentials -----------------------------------------------------------


def test_renewal_credential_round_trip(now: datetime) -> None:
    plaintext, record = issue_renewal_credential("store-012", "a1", now=now)
    assert plaintext.startswith("fpr_")
    assert renewal_credential_id(plaintext) == record.token_id
    assert record.expires_at == now + timedelta(days=30)
    # An agent that was offline for 29 days can still re-enrol.
    check_renewal_credential(
        plaintext, record, site="store-012", agent_id="a1", now=now + timedelta(days=29)
    )
    with pytest.raises(ExpiredTokenError):
        check_renewal_credential(plaintext, record, now=now + timedelta(days=30))
    with pytest.raises(RevokedTokenError):
        check_renewal_credential(plaintext, record.revoke(now=now), now=now)


def test_renewal_credential_is_bound_to_site_and_agent(now: datetime) -> None:
    plaintext, record = issue_renewal_credential("store-012", "a1", now=now)
    with pytest.raises(TokenScopeError, match="site 'store-012', not 'store-013'"):
        check_renewal_credential(plaintext, record, site="store-013", now=now)
    with pytest.raises(TokenScopeError, match="agent 'a1', not 'a2'"):
        check_renewal_credential(plaintext, record, agent_id="a2", now=now)


def test_naive_timestamps_from_a_store_are_utc(now: datetime) -> None:
    plaintext, record = create_bootstrap_token("s", timedelta(minutes=5), now=now)
    naive = BootstrapTokenRecord(
        token_id=record.token_id,
        secret_hash=record.secret_hash,
        created_at=record.created_at.replace(tzinfo=None),
        expires_at=record.expires_at.replace(tzinfo=None),
        site="s",
    )
    check_bootstrap_token(plaintext, naive, now=now + timedelta(minutes=4))
    with pytest.raises(ExpiredTokenError):
        check_bootstrap_token(plaintext, naive, now=now + timedelta(minutes=5))
