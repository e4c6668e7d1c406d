"""Certificate signing requests: built by the agent, checked by the CA.

The agent generates its key locally and sends only the CSR, so the private
key never leaves the agent. The CSR carries the SPIFFE ID the agent asks
for; the CA treats it as a request only: the identity in the certificate
comes from what the server authenticated (bootstrap token, renewal
credential or the current certificate), never from the CSR.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from fleetplane.security.errors import CertificateError
from fleetplane.security.keys import ACCEPTED_CURVES, PrivateKey
from fleetplane.security.spiffe import SpiffeId


def build_csr(key: PrivateKey, spiffe_id: SpiffeId) -> bytes:
    """A PEM CSR for ``key`` that asks for ``spiffe_id``."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, spiffe_id.agent_id)]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id.uri)]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def load_csr(data: bytes | str) -> x509.CertificateSigningRequest:
    """Parse a PEM or DER CSR and check it with :func:`check_csr`.

    The self-signature proves the requester holds the private key of the
    public key it wants certified.
    """
    raw = data.encode() if isinstance(data, str) else data
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            csr = x509.load_pem_x509_csr(raw)
        else:
            csr = x509.load_der_x509_csr(raw)
    except ValueError as error:
        raise CertificateError(
            f"certificate signing request is not valid PEM or DER: {error} "
            "(send the CSR the agent generated, unmodified)"
        ) from None
    return check_csr(csr)


def check_csr(csr: x509.CertificateSigningRequest) -> x509.CertificateSigningRequest:
    """``csr`` when its signature verifies and its key type is accepted."""
    if not csr.is_signature_valid:
        raise CertificateError(
            "certificate signing request signature does not verify: it was modified or not "
            "signed with the key it contains (regenerate the CSR with the agent's key)"
        )
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ACCEPTED_CURVES):
        raise CertificateError(
            f"certificate signing request has an unsupported key ({type(key).__name__}); "
            "agents must use ECDSA P-256 or P-384 keys"
        )
    return csr


def requested_spiffe_id(csr: x509.CertificateSigningRequest) -> SpiffeId | None:
    """The agent SPIFFE ID the CSR asks for, or None when it names none."""
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(uris) != 1:
        return None
    try:
        return SpiffeId.parse(uris[0])
    except ValueError:
        return None
