"""Keyrings and envelope encryption of secrets at rest."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetplane.security import (
    DecryptionError,
    Key,
    Keyring,
    KeyringError,
    decrypt_secret,
    encrypt_secret,
    generate_key_text,
    key_id_of,
    load_keyring,
    parse_keyring,
    rewrap_secret,
)
from fleetplane.security.keyring import key_fingerprint

K1 = Key("k1", b"\x01" * 32)
K2 = Key("k2", b"\x02" * 32)


def _b64(material: bytes) -> str:
    return base64.b64encode(material).decode()


def test_round_trip_and_format() -> None:
    keyring = Keyring((K1,))
    stored = encrypt_secret(keyring, "db-password", b"hunter2-but-longer")
    assert stored.startswith("fpenc1.k1.")
    assert stored.isascii() and b"hunter2" not in stored.encode()
    assert key_id_of(stored) == "k1"
    assert decrypt_secret(keyring, "db-password", stored) == b"hunter2-but-longer"


def test_each_encryption_is_fresh() -> None:
    keyring = Keyring((K1,))
    assert encrypt_secret(keyring, "a", b"same") != encrypt_secret(keyring, "a", b"same")


@settings(max_examples=50, deadline=None)
@given(name=st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}", fullmatch=True), plaintext=st.binary())
def test_round_trip_any_value(name: str, plaintext: bytes) -> None:
    keyring = Keyring((K1,))
    assert decrypt_secret(keyring, name, encrypt_secret(keyring, name, plaintext)) == plaintext


def test_wrong_key_is_reported() -> None:
    stored = encrypt_secret(Keyring((K1,)), "db", b"secret value")
    impostor = Keyring((Key("k1", b"\x09" * 32),))
    with pytest.raises(DecryptionError, match="does not decrypt under key 'k1'"):
        decrypt_secret(impostor, "db", stored)
    with pytest.raises(DecryptionError, match="key 'k1', which the keyring does not hold"):
        decrypt_secret(Keyring((K2,)), "db", stored)


def test_swapped_rows_do_not_decrypt() -> None:
    keyring = Keyring((K1,))
    db = encrypt_secret(keyring, "db", b"db secret")
    api = encrypt_secret(keyring, "api", b"api secret")
    with pytest.raises(DecryptionError, match="belongs to another secret"):
        decrypt_secret(keyring, "api", db)
    # Keeping api's wrapped data key but taking db's ciphertext fails too.
    mixed = ".".join(api.split(".")[:4] + db.split(".")[4:])
    with pytest.raises(DecryptionError, match="ciphertext was modified"):
        decrypt_secret(keyring, "api", mixed)


@pytest.mark.parametrize(
    ("stored", "message"),
    [
        ("plain text", "not a fleetplane ciphertext"),
        ("fpenc1.k1.a.b.c", "not a fleetplane ciphertext"),
        ("fpenc9.k1.a.b.c.d", "not a fleetplane ciphertext"),
        ("fpenc1.k1.!!.b.c.d", "corrupt"),
    ],
)
def test_garbage_is_reported(stored: str, message: str) -> None:
    with pytest.raises(DecryptionError, match=message):
        decrypt_secret(Keyring((K1,)), "db", stored)


def test_flipped_ciphertext_bit_is_detected() -> None:
    keyring = Keyring((K1,))
    stored = encrypt_secret(keyring, "db", b"secret value")
    head, _, ciphertext = stored.rpartition(".")
    raw = bytearray(base64.urlsafe_b64decode(ciphertext + "=" * (-len(ciphertext) % 4)))
    raw[0] ^= 1
    tampered = head + "." + base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    with pytest.raises(DecryptionError, match="ciphertext was modified"):
        decrypt_secret(keyring, "db", tampered)


def test_rotation_by_rewrapping() -> None:
    old = Keyring((K1,))
    stored = encrypt_secret(old, "db", b"secret value")
    rotating = Keyring((K2, K1))
    assert decrypt_secret(rotating, "db", stored) == b"secret value"
    rewrapped = rewrap_secret(rotating, "db", stored)
    assert key_id_of(rewrapped) == "k2"
    # The data itself was not re-encrypted, only its data key.
    assert rewrapped.split(".")[4:] == stored.split(".")[4:]
    assert rewrap_secret(rotating, "db", rewrapped) == rewrapped
    assert decrypt_secret(Keyring((K2,)), "db", rewrapped) == b"secret value"
    with pytest.raises(DecryptionError):
        decrypt_secret(old, "db", rewrapped)


def test_new_secrets_use_the_primary_key() -> None:
    assert key_id_of(encrypt_secret(Keyring((K2, K1)), "db", b"x")) == "k2"


# --- keyring parsing and loading -----------------------------------------------------


def test_parse_keyring_entries() -> None:
    material = b"\x05" * 32
    text = f"# rotated 2026-03\nnew:{_b64(K2.material)}\n{_b64(material)}, old:{_b64(K1.material)}"
    keyring = parse_keyring(text)
    assert keyring.key_ids == ["new", key_fingerprint(material), "old"]
    assert keyring.primary.material == K2.material
    assert keyring.get("old") == Key("old", K1.material)
    assert keyring.get("missing") is None


def test_generated_key_text_parses() -> None:
    text = generate_key_text()
    keyring = parse_keyring(text)
    assert len(keyring.primary.material) == 32
    assert text.startswith(keyring.primary.key_id + ":")
    assert generate_key_text() != text


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no key found"),
        ("# only a comment", "no key found"),
        ("not base64!", "key 1: not valid base64"),
        (_b64(b"short"), "key 1: key is 5 bytes, must be 32"),
        (f"a.b:{_b64(b'x' * 32)}", "key id 'a.b'"),
        (f"a:{_b64(b'x' * 32)}\na:{_b64(b'y' * 32)}", "appear more than once"),
    ],
)
def test_parse_keyring_errors(text: str, message: str) -> None:
    with pytest.raises(KeyringError, match=message) as caught:
        parse_keyring(text, source="/etc/fleetplane/key")
    assert "/etc/fleetplane/key" in str(caught.value) or "more than once" in message
    # The error never repeats the key material.
    assert _b64(b"y" * 32) not in str(caught.value)


def test_load_keyring_from_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "secrets.key"
    path.write_text(f"k1:{_b64(K1.material)}\n")
    assert load_keyring(path=path).primary == K1
    environ = {"FLEETPLANE_SECRET_KEY": f"k2:{_b64(K2.material)}"}
    assert load_keyring(env_var="FLEETPLANE_SECRET_KEY", environ=environ).primary == K2
    # A file wins over the environment when both are given.
    assert load_keyring(path=path, env_var="FLEETPLANE_SECRET_KEY", environ=environ).primary == K1


def test_load_keyring_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.key"
    with pytest.raises(KeyringError, match=r"missing\.key: key file not found .*> "):
        load_keyring(path=missing)
    with pytest.raises(KeyringError, match="FLEETPLANE_SECRET_KEY is not set"):
        load_keyring(env_var="FLEETPLANE_SECRET_KEY", environ={})
    with pytest.raises(KeyringError, match=r"\$FLEETPLANE_SECRET_KEY: key 1: not valid base64"):
        load_keyring(env_var="FLEETPLANE_SECRET_KEY", environ={"FLEETPLANE_SECRET_KEY": "no!pe"})
    with pytest.raises(KeyringError, match="no key given"):
        load_keyring()
    with pytest.raises(KeyringError, match="at least one key"):
        Keyring(())
