"""Errors the security engine raises on purpose.

They subclass :class:`fleetplane.errors.FleetplaneError`, so the CLI prints
them without a traceback. Each message says what was rejected, which object
(token id, certificate serial, key id, file) and what to do about it; the
messages never contain secret material.
"""

from __future__ import annotations

from fleetplane.errors import FleetplaneError


class SecurityError(FleetplaneError):
    """Base class of every security engine error."""


class CertificateError(SecurityError):
    """A certificate, CSR or CA file was rejected or could not be used."""


class TokenError(SecurityError):
    """A presented token or credential was rejected.

    ``reason`` is a stable machine-readable code (``malformed``, ``invalid``,
    ``expired``, ``revoked``, ``used``, ``scope``) that a server can map to a
    status code and a metric label without parsing the message.
    """

    reason = "invalid"

    def __init__(self, message: str, *, token_id: str | None = None) -> None:
        self.token_id = token_id
        super().__init__(message)


class MalformedTokenError(TokenError):
    """The text is not a fleetplane token of the expected kind at all."""

    reason = "malformed"


class InvalidTokenError(TokenError):
    """The token id exists but the secret part does not match."""

    reason = "invalid"


class ExpiredTokenError(TokenError):
    reason = "expired"


class RevokedTokenError(TokenError):
    reason = "revoked"


class TokenAlreadyUsedError(TokenError):
    """A one-time token (bootstrap) was presented a second time."""

    reason = "used"


class TokenScopeError(TokenError):
    """The token is valid but not for this site or agent."""

    reason = "scope"


class KeyringError(SecurityError):
    """The encryption key for secrets at rest is missing or malformed."""


class DecryptionError(SecurityError):
    """A stored secret could not be decrypted (wrong key, tampering, or swapped rows)."""
