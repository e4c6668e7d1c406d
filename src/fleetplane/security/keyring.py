"""Symmetric keys from a file or an environment variable, with ids for rotation.

Text format: one or more entries separated by newlines or commas, each
``<key-id>:<base64 of 32 bytes>`` or just the base64 (the id is then the
first 8 hex digits of the key's SHA-256). The first entry is the primary key
(used for new data); the others only for reading data written under them.
Rotating is: put a new key first, keep the old ones after it, re-encrypt,
then drop the old ones. Lines starting with ``#`` are comments.

Used for secrets at rest (``encryption``) and for the audit chain HMAC
(``audit``); give the two different keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from fleetplane.security.errors import KeyringError

KEY_BYTES = 32
# No "." or ":": they separate fields in stored ciphertexts and audit hashes.
_KEY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_HINT = "generate one with: python -m fleetplane.security"


@dataclass(frozen=True, slots=True)
class Key:
    key_id: str
    material: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Keyring:
    """Keys by id; ``primary`` is used for new ciphertexts and audit records."""

    keys: tuple[Key, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise KeyringError(f"a keyring needs at least one key ({_HINT})")
        ids = [key.key_id for key in self.keys]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise KeyringError(f"key id(s) {', '.join(duplicates)} appear more than once")

    @property
    def primary(self) -> Key:
        return self.keys[0]

    def get(self, key_id: str) -> Key | None:
        for key in self.keys:
            if key.key_id == key_id:
                return key
        return None

    @property
    def key_ids(self) -> list[str]:
        return [key.key_id for key in self.keys]


def key_fingerprint(material: bytes) -> str:
    return hashlib.sha256(material).hexdigest()[:8]


def generate_key_text() -> str:
    """A new random key in the keyring text format (one entry with its id)."""
    material = secrets.token_bytes(KEY_BYTES)
    return f"{key_fingerprint(material)}:{base64.b64encode(material).decode('ascii')}"


def parse_keyring(text: str, *, source: str = "key") -> Keyring:
    """Parse keyring text; ``source`` (file path or env var name) names it in errors."""
    entries = [
        entry.strip()
        for line in text.splitlines()
        if not line.strip().startswith("#")
        for entry in line.split(",")
        if entry.strip()
    ]
    if not entries:
        raise KeyringError(f"{source}: no key found ({_HINT})")
    return Keyring(
        tuple(_parse_entry(entry, source, number) for number, entry in enumerate(entries, 1))
    )


def _parse_entry(entry: str, source: str, number: int) -> Key:
    key_id, separator, encoded = entry.rpartition(":")
    if not separator:
        key_id, encoded = "", entry
    where = f"{source}: key {number}"
    if key_id and not _KEY_ID.match(key_id):
        raise KeyringError(f"{where}: key id {key_id!r} must be letters, digits, '_' or '-'")
    try:
        material = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise KeyringError(f"{where}: not valid base64 ({_HINT})") from None
    if len(material) != KEY_BYTES:
        raise KeyringError(f"{where}: key is {len(material)} bytes, must be {KEY_BYTES} ({_HINT})")
    return Key(key_id or key_fingerprint(material), material)


def load_keyring(
    *,
    path: Path | None = None,
    env_var: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> Keyring:
    """The keyring from ``path`` if given, else from environment variable ``env_var``."""
    if path is not None:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise KeyringError(
                f"{path}: key file not found "
                f"(create it with: python -m fleetplane.security > {path})"
            ) from None
        except OSError as error:
            raise KeyringError(f"{path}: cannot read key file: {error.strerror}") from None
        return parse_keyring(text, source=str(path))
    if env_var is not None:
        value = (os.environ if environ is None else environ).get(env_var)
        if value is None or not value.strip():
            raise KeyringError(
                f"environment variable {env_var} is not set (set it to a key; {_HINT})"
            )
        return parse_keyring(value, source=f"${env_var}")
    raise KeyringError("no key given: pass a key file or an environment variable name")
