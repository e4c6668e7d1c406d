"""Security engine: CA and short-lived certificates, tokens, RBAC, audit chain, secrets.

Pure library (no network, no database). Every time-dependent function takes
an optional ``now``. The store persists the records these functions return
(:class:`TokenRecord`, :class:`BootstrapTokenRecord`,
:class:`RenewalCredentialRecord`, :class:`AuditRecord`, ciphertext strings)
and passes them back in for checks. See ``docs/security.md``.
"""

from fleetplane.security.audit import (
    GENESIS_HASH,
    AuditEvent,
    AuditRecord,
    Checkpoint,
    VerifyResult,
    append,
    verify,
)
from fleetplane.security.bootstrap import (
    DEFAULT_BOOTSTRAP_TTL,
    BootstrapTokenRecord,
    already_used,
    bootstrap_token_id,
    check_bootstrap_token,
    create_bootstrap_token,
)
from fleetplane.security.ca import (
    DEFAULT_AGENT_CERT_LIFETIME,
    DEFAULT_SERVER_CERT_LIFETIME,
    AgentIdentity,
    CertificateAuthority,
    certificate_pem,
    load_certificate,
)
from fleetplane.security.canonical import canonical_json, digest, format_timestamp
from fleetplane.security.csr import build_csr, load_csr, requested_spiffe_id
from fleetplane.security.encryption import decrypt_secret, encrypt_secret, key_id_of, rewrap_secret
from fleetplane.security.errors import (
    CertificateError,
    DecryptionError,
    ExpiredTokenError,
    InvalidTokenError,
    KeyringError,
    MalformedTokenError,
    RevokedTokenError,
    SecurityError,
    TokenAlreadyUsedError,
    TokenError,
    TokenScopeError,
)
from fleetplane.security.keyring import Key, Keyring, generate_key_text, load_keyring, parse_keyring
from fleetplane.security.keys import generate_private_key, load_private_key, private_key_pem
from fleetplane.security.pseudonym import Pseudonymizer
from fleetplane.security.rbac import Decision, Principal, Role, Verb, authorize, policy_markdown
from fleetplane.security.redaction import RedactingFilter, install_redaction, redact
from fleetplane.security.renewal import (
    DEFAULT_RENEWAL_TTL,
    RenewalCredentialRecord,
    check_renewal_credential,
    issue_renewal_credential,
    renewal_credential_id,
)
from fleetplane.security.spiffe import SpiffeId
from fleetplane.security.tokens import TokenRecord, create_token, token_id, verify_token

__all__ = [
    "DEFAULT_AGENT_CERT_LIFETIME",
    "DEFAULT_BOOTSTRAP_TTL",
    "DEFAULT_RENEWAL_TTL",
    "DEFAULT_SERVER_CERT_LIFETIME",
    "GENESIS_HASH",
    "AgentIdentity",
    "AuditEvent",
    "AuditRecord",
    "BootstrapTokenRecord",
    "CertificateAuthority",
    "CertificateError",
    "Checkpoint",
    "Decision",
    "DecryptionError",
    "ExpiredTokenError",
    "InvalidTokenError",
    "Key",
    "Keyring",
    "KeyringError",
    "MalformedTokenError",
    "Principal",
    "Pseudonymizer",
    "RedactingFilter",
    "RenewalCredentialRecord",
    "RevokedTokenError",
    "Role",
    "SecurityError",
    "SpiffeId",
    "TokenAlreadyUsedError",
    "TokenError",
    "TokenRecord",
    "TokenScopeError",
    "Verb",
    "VerifyResult",
    "already_used",
    "append",
    "authorize",
    "bootstrap_token_id",
    "build_csr",
    "canonical_json",
    "certificate_pem",
    "check_bootstrap_token",
    "check_renewal_credential",
    "create_bootstrap_token",
    "create_token",
    "decrypt_secret",
    "digest",
    "encrypt_secret",
    "format_timestamp",
    "generate_key_text",
    "generate_private_key",
    "install_redaction",
    "issue_renewal_credential",
    "key_id_of",
    "load_certificate",
    "load_csr",
    "load_keyring",
    "load_private_key",
    "parse_keyring",
    "policy_markdown",
    "private_key_pem",
    "redact",
    "renewal_credential_id",
    "requested_spiffe_id",
    "rewrap_secret",
    "token_id",
    "verify",
    "verify_token",
]
