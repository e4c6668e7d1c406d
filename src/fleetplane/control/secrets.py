"""Sealing Secret specs with the security engine's envelope encryption.

Every value of ``spec.data`` is encrypted on its own, bound to
``<secret name>/<key>`` so that values cannot be swapped between keys or
secrets in the database without failing to decrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from fleetplane.control.store.errors import SecretsUnavailable
from fleetplane.security.encryption import decrypt_secret, encrypt_secret
from fleetplane.security.keyring import Keyring
from fleetplane.security.redaction import MASK

SECRET_KIND = "Secret"


class SecretCodec:
    kinds: frozenset[str] = frozenset({SECRET_KIND})

    def __init__(self, keyring: Keyring | None) -> None:
        self._keyring = keyring
        # Fingerprints in diffs must differ when values differ, yet reveal
        # nothing: an HMAC under a key that never leaves this process.
        self._fingerprint_key = secrets.token_bytes(32)

    def _ring(self, name: str) -> Keyring:
        if self._keyring is None:
            raise SecretsUnavailable(
                f"Secret {name!r}: this server has no secrets key; start `fleetplane serve` "
                "with --secrets-key-file FILE or FLEETPLANE_SECRETS_KEY set"
            )
        return self._keyring

    def seal(self, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        keyring = self._ring(name)
        data = {
            key: encrypt_secret(keyring, f"{name}/{key}", str(value).encode("utf-8"))
            for key, value in (spec.get("data") or {}).items()
        }
        return {**spec, "data": data}

    def open(self, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        keyring = self._ring(name)
        data = {
            key: decrypt_secret(keyring, f"{name}/{key}", str(value)).decode("utf-8")
            for key, value in (spec.get("data") or {}).items()
        }
        return {**spec, "data": data}

    def redact(self, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        data = {
            key: f"{MASK} {self._fingerprint(str(value))}"
            for key, value in (spec.get("data") or {}).items()
        }
        return {**spec, "data": data}

    def _fingerprint(self, value: str) -> str:
        return hmac.new(self._fingerprint_key, value.encode(), hashlib.sha256).hexdigest()[:8]
