"""Fixtures shared by the security engine tests: a fixed clock and fleet CAs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fleetplane.security import CertificateAuthority

FIXED_NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def now() -> datetime:
    return FIXED_NOW


@pytest.fixture(scope="session")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("acme", now=FIXED_NOW)


@pytest.fixture(scope="session")
def other_ca() -> CertificateAuthority:
    """A second CA with the same fleet name: its certificates must never verify against `ca`."""
    return CertificateAuthority.create("acme", now=FIXED_NOW)
