"""The fleet certificate authority: issues short-lived certificates and verifies agents.

One self-signed ECDSA P-256 CA per fleet. Agents get client certificates
(default lifetime 1 h) bound to ``spiffe://<fleet>/site/<site>/agent/<id>``;
the agent port gets server certificates for its DNS names / IP addresses.
Every certificate carries Subject/Authority Key Identifiers, key usage and
extended key usage, because OpenSSL's strict mode (the default from Python
3.13 on) rejects certificates without them.

Short lifetimes are the main revocation mechanism: a stolen certificate is
useful for at most an hour. For that hour, :meth:`verify_agent_certificate`
also takes a set of revoked serial numbers.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Self

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from fleetplane.errors import Problem, ValidationError
from fleetplane.security.clock import resolve_now
from fleetplane.security.csr import check_csr, load_csr
from fleetplane.security.errors import CertificateError
from fleetplane.security.keys import (
    PrivateKey,
    generate_private_key,
    load_private_key,
    private_key_pem,
)
from fleetplane.security.rbac import Principal, Role
from fleetplane.security.spiffe import SpiffeId, check_name

DEFAULT_CA_LIFETIME = timedelta(days=3650)
DEFAULT_AGENT_CERT_LIFETIME = timedelta(hours=1)
# The server certificate is loaded by the TLS listener; a day keeps it
# short-lived without forcing the server to reload it every hour.
DEFAULT_SERVER_CERT_LIFETIME = timedelta(hours=24)
# Certificates start this much in the past so an agent whose clock is a
# little behind the server's can use a freshly issued one at once.
CLOCK_SKEW = timedelta(minutes=5)

CA_CERT_FILE = "ca.crt"
CA_KEY_FILE = "ca.key"

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class AgentIdentity:
    """What a verified agent certificate proves."""

    spiffe_id: SpiffeId
    serial: int
    not_before: datetime
    not_after: datetime

    @property
    def fleet(self) -> str:
        return self.spiffe_id.fleet

    @property
    def site(self) -> str:
        return self.spiffe_id.site

    @property
    def agent_id(self) -> str:
        return self.spiffe_id.agent_id

    def principal(self) -> Principal:
        """The RBAC principal of this agent (role ``agent`` bound to its site)."""
        return Principal(name=self.spiffe_id.uri, role=Role.AGENT, site=self.site)


def certificate_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def load_certificate(data: bytes | str | x509.Certificate) -> x509.Certificate:
    """A certificate from PEM text, DER bytes (what ``getpeercert(True)`` returns) or as is."""
    if isinstance(data, x509.Certificate):
        return data
    raw = data.encode() if isinstance(data, str) else data
    try:
        if raw.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(raw)
        return x509.load_der_x509_certificate(raw)
    except ValueError as error:
        raise CertificateError(f"not a PEM or DER certificate: {error}") from None


def _key_usage(*, digital_signature: bool = False, cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


class CertificateAuthority:
    """A fleet CA: its certificate and private key, and what it can issue and verify."""

    def __init__(self, certificate: x509.Certificate, private_key: PrivateKey) -> None:
        if certificate.public_key() != private_key.public_key():
            raise CertificateError("CA private key does not belong to the CA certificate")
        self.certificate = certificate
        self._key = private_key
        self.fleet = _ca_fleet(certificate)
        self._ski = x509.SubjectKeyIdentifier.from_public_key(private_key.public_key())

    # --- creating and persisting -------------------------------------------------

    @classmethod
    def create(
        cls, fleet: str, *, now: datetime | None = None, lifetime: timedelta = DEFAULT_CA_LIFETIME
    ) -> Self:
        """A new CA for ``fleet`` (the SPIFFE trust domain) with a fresh P-256 key."""
        try:
            check_name(fleet, "fleet name")
        except ValueError as error:
            raise ValidationError(Problem(str(error), field_path="fleet")) from None
        start = resolve_now(now)
        key = generate_private_key()
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fleetplane"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"fleetplane CA {fleet}"),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start - CLOCK_SKEW)
            .not_valid_after(start + lifetime)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(digital_signature=True, cert_sign=True), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
            )
            # SPIFFE: a CA certificate may name its trust domain; it is how
            # a loaded CA knows which fleet it serves.
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{fleet}")]),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(certificate, key)

    @property
    def certificate_pem(self) -> bytes:
        """The CA certificate, which servers and agents use as their trust anchor."""
        return certificate_pem(self.certificate)

    def private_key_pem(self, passphrase: bytes | None = None) -> bytes:
        return private_key_pem(self._key, passphrase)

    @classmethod
    def from_pem(
        cls,
        certificate_pem: bytes,
        key_pem: bytes,
        passphrase: bytes | None = None,
        *,
        source: str = "CA",
    ) -> Self:
        try:
            certificate = load_certificate(certificate_pem)
        except CertificateError as error:
            raise CertificateError(f"{source} certificate: {error}") from None
        key = load_private_key(key_pem, passphrase, source=f"{source} key")
        return cls(certificate, key)

    def save(self, directory: Path, passphrase: bytes | None = None) -> None:
        """Write ``ca.crt`` and ``ca.key`` (mode 0600) into ``directory``, atomically each."""
        directory.mkdir(parents=True, exist_ok=True)
        _write_atomically(directory / CA_CERT_FILE, self.certificate_pem, mode=0o644)
        _write_atomically(directory / CA_KEY_FILE, self.private_key_pem(passphrase), mode=0o600)

    @classmethod
    def load(cls, directory: Path, passphrase: bytes | None = None) -> Self:
        cert_path, key_path = directory / CA_CERT_FILE, directory / CA_KEY_FILE
        for path in (cert_path, key_path):
            if not path.is_file():
                raise CertificateError(
                    f"{path}: CA file not found (create the CA first, or point to the "
                    "directory that holds ca.crt and ca.key)"
                )
        return cls.from_pem(
            cert_path.read_bytes(), key_path.read_bytes(), passphrase, source=str(directory / "ca")
        )

    # --- issuing --------------------------------------------------------------------

    def issue_agent_certificate(
        self,
        csr: bytes | str | x509.CertificateSigningRequest,
        *,
        site: str,
        agent_id: str,
        now: datetime | None = None,
        lifetime: timedelta = DEFAULT_AGENT_CERT_LIFETIME,
    ) -> x509.Certificate:
        """A client certificate for the CSR's key, bound to ``site``/``agent_id``.

        The caller has authenticated the agent (bootstrap token, renewal
        credential or current certificate) and passes the identity from that
        authentication; names requested in the CSR are ignored.
        """
        request = (
            check_csr(csr) if isinstance(csr, x509.CertificateSigningRequest) else load_csr(csr)
        )
        spiffe_id = SpiffeId(fleet=self.fleet, site=site, agent_id=agent_id)
        public_key = request.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            # load_csr already refuses other key types; this narrows the type.
            raise CertificateError("agent keys must be ECDSA")
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.fleet),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, site),
                x509.NameAttribute(NameOID.COMMON_NAME, agent_id),
            ]
        )
        return self._issue(
            subject,
            public_key,
            [x509.UniformResourceIdentifier(spiffe_id.uri)],
            ExtendedKeyUsageOID.CLIENT_AUTH,
            now,
            lifetime,
        )

    def issue_server_certificate(
        self,
        public_key: ec.EllipticCurvePublicKey,
        *,
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[str | IpAddress] = (),
        now: datetime | None = None,
        lifetime: timedelta = DEFAULT_SERVER_CERT_LIFETIME,
    ) -> x509.Certificate:
        """A TLS server certificate for the given DNS names and IP addresses."""
        names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        for address in ip_addresses:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(address)))
            except ValueError:
                raise CertificateError(
                    f"server certificate: {address!r} is not an IP address "
                    "(put host names in dns_names)"
                ) from None
        if not names:
            raise CertificateError(
                "server certificate needs at least one DNS name or IP address "
                "(e.g. dns_names=['localhost'], ip_addresses=['127.0.0.1'])"
            )
        first = names[0].value
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.fleet),
                x509.NameAttribute(NameOID.COMMON_NAME, str(first)),
            ]
        )
        return self._issue(
            subject, public_key, names, ExtendedKeyUsageOID.SERVER_AUTH, now, lifetime
        )

    def _issue(
        self,
        subject: x509.Name,
        public_key: ec.EllipticCurvePublicKey,
        names: list[x509.GeneralName],
        usage: x509.ObjectIdentifier,
        now: datetime | None,
        lifetime: timedelta,
    ) -> x509.Certificate:
        if lifetime <= timedelta(0):
            raise CertificateError(f"certificate lifetime must be positive, got {lifetime}")
        start = resolve_now(now)
        ca_end = self.certificate.not_valid_after_utc
        if start >= ca_end:
            raise CertificateError(
                f"the fleet CA expired at {ca_end.isoformat()} "
                "(create a new CA and re-enrol the agents)"
            )
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start - CLOCK_SKEW)
            .not_valid_after(min(start + lifetime, ca_end))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            # Non-critical because the subject is not empty (RFC 5280 4.2.1.6).
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )

    # --- verifying ------------------------------------------------------------------

    def verify_agent_certificate(
        self,
        certificate: bytes | str | x509.Certificate,
        *,
        now: datetime | None = None,
        revoked_serials: Collection[int] = frozenset(),
    ) -> AgentIdentity:
        """The verified identity of an agent's client certificate (DER, PEM or object).

        Checks that it chains to this CA, is within its validity period at
        ``now``, is a client-auth end-entity certificate (RFC 5280 profile,
        via cryptography's verifier), is not revoked, and names exactly one
        agent SPIFFE ID in this CA's fleet.
        """
        leaf = load_certificate(certificate)
        moment = resolve_now(now)
        serial = leaf.serial_number
        verifier = (
            PolicyBuilder().store(Store([self.certificate])).time(moment).build_client_verifier()
        )
        try:
            verified = verifier.verify(leaf, [])
        except VerificationError as error:
            raise CertificateError(
                f"agent certificate serial {serial:x} rejected: {_explain(error, leaf, moment)}"
            ) from None
        if serial in revoked_serials:
            raise CertificateError(
                f"agent certificate serial {serial:x} is revoked (the agent must re-enrol)"
            )
        uris = [
            name.value
            for name in verified.subjects or []
            if isinstance(name, x509.UniformResourceIdentifier)
        ]
        if len(uris) != 1:
            raise CertificateError(
                f"agent certificate serial {serial:x} must name exactly one SPIFFE ID, "
                f"it has {len(uris)}"
            )
        try:
            spiffe_id = SpiffeId.parse(uris[0])
        except ValueError as error:
            raise CertificateError(f"agent certificate serial {serial:x}: {error}") from None
        if spiffe_id.fleet != self.fleet:
            raise CertificateError(
                f"agent certificate serial {serial:x} is for fleet {spiffe_id.fleet!r}, "
                f"this CA serves {self.fleet!r}"
            )
        return AgentIdentity(
            spiffe_id=spiffe_id,
            serial=serial,
            not_before=leaf.not_valid_before_utc,
            not_after=leaf.not_valid_after_utc,
        )


def _explain(error: VerificationError, leaf: x509.Certificate, moment: datetime) -> str:
    """Name the common failures plainly; fall back to the verifier's own message."""
    if moment > leaf.not_valid_after_utc:
        return f"expired at {leaf.not_valid_after_utc.isoformat()} (the agent must renew it)"
    if moment < leaf.not_valid_before_utc:
        return f"not valid before {leaf.not_valid_before_utc.isoformat()} (check clocks)"
    return f"{error} (is it issued by this fleet's CA?)"


def _ca_fleet(certificate: x509.Certificate) -> str:
    """The trust domain a CA certificate names in its ``spiffe://<fleet>`` URI SAN."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = x509.SubjectAlternativeName([])
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith("spiffe://") and "/" not in uri[len("spiffe://") :]:
            return check_name(uri[len("spiffe://") :], "fleet name")
    raise CertificateError(
        "CA certificate names no fleet (expected a 'spiffe://<fleet>' URI); "
        "it was not created by fleetplane"
    )


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Write via a temporary file created with ``mode`` so the key is never world-readable."""
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_AGENT_CERT_LIFETIME",
    "DEFAULT_SERVER_CERT_LIFETIME",
    "AgentIdentity",
    "CertificateAuthority",
    "certificate_pem",
    "load_certificate",
]
