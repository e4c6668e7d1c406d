"""Secrets at rest: envelope encryption with AES-256-GCM.

Each value gets its own random data key; the data key is encrypted
("wrapped") under the keyring's primary key. Rotating the primary key then
means re-wrapping 32-byte data keys (:func:`rewrap`), not re-encrypting
every value, and no single key encrypts more than a few messages, which
keeps GCM's random 96-bit nonces far from their collision bound.

Both layers authenticate the secret's name as associated data: a row
copied or swapped onto another secret's name fails to decrypt instead of
silently handing out the other secret.

Stored form (ASCII, fits a TEXT column)::

    fpenc1.<key id>.<nonce>.<wrapped data key>.<nonce>.<ciphertext>

with URL-safe base64 fields.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from fleetplane.security.errors import DecryptionError
from fleetplane.security.keyring import Key, Keyring

_VERSION = "fpenc1"
_NONCE_BYTES = 12
_DATA_KEY_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _associated_data(layer: str, name: str, key_id: str) -> bytes:
    return f"fleetplane-secret\0{_VERSION}\0{layer}\0{key_id}\0{name}".encode()


@dataclass(frozen=True, slots=True)
class _Envelope:
    key_id: str
    wrap_nonce: bytes
    wrapped_key: bytes
    data_nonce: bytes
    ciphertext: bytes

    def __str__(self) -> str:
        return ".".join(
            [
                _VERSION,
                self.key_id,
                _b64(self.wrap_nonce),
                _b64(self.wrapped_key),
                _b64(self.data_nonce),
                _b64(self.ciphertext),
            ]
        )

    @classmethod
    def parse(cls, stored: str, name: str) -> _Envelope:
        parts = stored.split(".")
        if len(parts) != 6 or parts[0] != _VERSION:
            raise DecryptionError(
                f"secret {name!r}: stored value is not a fleetplane ciphertext "
                f"(expected '{_VERSION}.…'); it was not written by this server or is corrupt"
            )
        try:
            wrap_nonce, wrapped, data_nonce, ciphertext = (_unb64(p) for p in parts[2:])
        except (binascii.Error, ValueError):
            raise DecryptionError(
                f"secret {name!r}: stored value is corrupt (bad base64)"
            ) from None
        return cls(parts[1], wrap_nonce, wrapped, data_nonce, ciphertext)


def encrypt_secret(keyring: Keyring, name: str, plaintext: bytes) -> str:
    """``plaintext`` encrypted for the secret called ``name`` under the primary key."""
    data_key = AESGCM.generate_key(bit_length=_DATA_KEY_BYTES * 8)
    data_nonce = secrets.token_bytes(_NONCE_BYTES)
    primary = keyring.primary
    ciphertext = AESGCM(data_key).encrypt(data_nonce, plaintext, _associated_data("data", name, ""))
    return str(_wrap(primary, name, data_key, data_nonce, ciphertext))


def _wrap(key: Key, name: str, data_key: bytes, data_nonce: bytes, ciphertext: bytes) -> _Envelope:
    wrap_nonce = secrets.token_bytes(_NONCE_BYTES)
    wrapped = AESGCM(key.material).encrypt(
        wrap_nonce, data_key, _associated_data("key", name, key.key_id)
    )
    return _Envelope(key.key_id, wrap_nonce, wrapped, data_nonce, ciphertext)


def _unwrap(keyring: Keyring, name: str, envelope: _Envelope) -> bytes:
    key = keyring.get(envelope.key_id)
    if key is None:
        raise DecryptionError(
            f"secret {name!r} is encrypted under key {envelope.key_id!r}, which the keyring "
            f"does not hold (it has {', '.join(keyring.key_ids)}); add that key after the primary"
        )
    try:
        return AESGCM(key.material).decrypt(
            envelope.wrap_nonce, envelope.wrapped_key, _associated_data("key", name, key.key_id)
        )
    except InvalidTag:
        raise DecryptionError(
            f"secret {name!r} does not decrypt under key {key.key_id!r}: the key is not the one "
            "it was encrypted with, the stored value was modified, or it belongs to another "
            "secret (rows swapped)"
        ) from None


def decrypt_secret(keyring: Keyring, name: str, stored: str) -> bytes:
    """The plaintext of secret ``name``; DecryptionError says why not."""
    envelope = _Envelope.parse(stored, name)
    data_key = _unwrap(keyring, name, envelope)
    try:
        return AESGCM(data_key).decrypt(
            envelope.data_nonce, envelope.ciphertext, _associated_data("data", name, "")
        )
    except InvalidTag:
        raise DecryptionError(
            f"secret {name!r}: the ciphertext was modified (its data key is intact)"
        ) from None


def rewrap_secret(keyring: Keyring, name: str, stored: str) -> str:
    """The same secret with its data key wrapped under the current primary key."""
    envelope = _Envelope.parse(stored, name)
    if envelope.key_id == keyring.primary.key_id:
        return stored
    data_key = _unwrap(keyring, name, envelope)
    return str(_wrap(keyring.primary, name, data_key, envelope.data_nonce, envelope.ciphertext))


def key_id_of(stored: str) -> str:
    """Which key a stored secret is wrapped under (to find rows left to rotate)."""
    return _Envelope.parse(stored, "?").key_id
