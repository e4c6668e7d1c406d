"""Pseudonymisation of field values in telemetry and logs.

A pseudonym is a keyed HMAC-SHA256 of the value, truncated to 128 bits:
stable for a key (the same user or device maps to the same pseudonym, so
counts and joins still work), not reversible, and not guessable by hashing
candidate values without the key — which is what a plain hash would allow
for small value spaces such as user names or IP addresses. Rotating the key
unlinks old pseudonyms from new ones.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Collection, Mapping
from typing import Any

from fleetplane.security.keyring import Key

PREFIX = "ps_"
_DOMAIN = b"fleetplane-pseudonym-v1\0"
_MIN_KEY_BYTES = 16


class Pseudonymizer:
    def __init__(self, key: Key | bytes) -> None:
        material = key.material if isinstance(key, Key) else key
        if len(material) < _MIN_KEY_BYTES:
            raise ValueError(f"pseudonymisation key must be at least {_MIN_KEY_BYTES} bytes")
        self._key = material

    def pseudonym(self, value: str) -> str:
        """``ps_`` + 26 base32 characters, the same for the same value and key."""
        mac = hmac.new(self._key, _DOMAIN + value.encode("utf-8"), hashlib.sha256).digest()
        return PREFIX + base64.b32encode(mac[:16]).decode("ascii").rstrip("=").lower()

    def pseudonymize_fields(
        self, record: Mapping[str, Any], field_names: Collection[str]
    ) -> dict[str, Any]:
        """A copy of ``record`` with the named fields replaced by pseudonyms (None stays None)."""
        return {
            name: self.pseudonym(str(value)) if name in field_names and value is not None else value
            for name, value in record.items()
        }
