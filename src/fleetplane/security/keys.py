"""Private keys: ECDSA P-256 everywhere.

P-256 is what every TLS stack in play (Python ``ssl``/OpenSSL, httpx,
uvicorn, browsers) accepts for both server and client certificates, and
its keys and signatures are small and fast to make.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fleetplane.security.errors import CertificateError

PrivateKey = ec.EllipticCurvePrivateKey
# Keys we accept from others (CSRs): P-256 and P-384 are both universally
# supported; anything else is refused rather than half-supported.
ACCEPTED_CURVES: tuple[type[ec.EllipticCurve], ...] = (ec.SECP256R1, ec.SECP384R1)


def generate_private_key() -> PrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: PrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM, encrypted with ``passphrase`` when one is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def load_private_key(
    pem: bytes, passphrase: bytes | None = None, *, source: str = "key"
) -> PrivateKey:
    """Load a PEM private key; ``source`` (e.g. a file path) names it in errors."""
    try:
        key = serialization.load_pem_private_key(pem, password=passphrase or None)
    except TypeError as error:
        # cryptography raises TypeError for "encrypted but no password" and the reverse.
        hint = (
            "pass the CA passphrase"
            if passphrase is None
            else "the key is not encrypted; pass no passphrase"
        )
        raise CertificateError(f"{source}: cannot load private key: {error} ({hint})") from None
    except ValueError:
        raise CertificateError(
            f"{source}: cannot load private key: not a PEM private key or wrong passphrase "
            "(check the file and the passphrase)"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(
        key.curve, ACCEPTED_CURVES
    ):
        raise CertificateError(
            f"{source}: unsupported key type {type(key).__name__} "
            "(fleetplane uses ECDSA P-256 keys; generate one with fleetplane)"
        )
    return key
