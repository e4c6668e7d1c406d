from __future__ import annotations

import ipaddress
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from fleetplane.errors import ValidationError
from fleetplane.security import (
    CertificateAuthority,
    CertificateError,
    SpiffeId,
    build_csr,
    certificate_pem,
    generate_private_key,
    load_certificate,
    load_csr,
    requested_spiffe_id,
)
from fleetplane.security.ca import CLOCK_SKEW


def _agent_cert(
    ca: CertificateAuthority, now: datetime, site: str = "store-012", agent_id: str = "a1"
) -> x509.Certificate:
    key = generate_private_key()
    csr = build_csr(key, SpiffeId("acme", site, agent_id))
    return ca.issue_agent_certificate(csr, site=site, agent_id=agent_id, now=now)


def test_agent_certificate_round_trip(ca: CertificateAuthority, now: datetime) -> None:
    cert = _agent_cert(ca, now)
    identity = ca.verify_agent_certificate(cert.public_bytes(serialization.Encoding.DER), now=now)
    assert (identity.fleet, identity.site, identity.agent_id) == ("acme", "store-012", "a1")
    assert str(identity.spiffe_id) == "spiffe://acme/site/store-012/agent/a1"
    assert identity.serial == cert.serial_number
    assert identity.not_after == now + timedelta(hours=1)
    assert identity.not_before == now - CLOCK_SKEW
    principal = identity.principal()
    assert (principal.role.value, principal.site) == ("agent", "store-012")


def test_agent_certificate_extensions(ca: CertificateAuthority, now: datetime) -> None:
    cert = _agent_cert(ca, now)
    ext = cert.extensions
    ca_ski = ca.certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    ski = ext.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert ski.digest == x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    basic = ext.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and not basic.value.ca
    usage = ext.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    san = ext.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://acme/site/store-012/agent/a1"
    ]
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)


def test_ca_certificate_is_a_p256_ca_naming_its_fleet(ca: CertificateAuthority) -> None:
    cert = ca.certificate
    key = cert.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert ca.fleet == "acme"


def test_server_certificate_names_and_usage(ca: CertificateAuthority, now: datetime) -> None:
    key = generate_private_key()
    cert = ca.issue_server_certificate(
        key.public_key(), dns_names=["localhost"], ip_addresses=["127.0.0.1", "::1"], now=now
    )
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.not_valid_after_utc == now + timedelta(hours=24)


def test_server_certificate_needs_a_name(ca: CertificateAuthority, now: datetime) -> None:
    key = generate_private_key()
    with pytest.raises(CertificateError, match="at least one DNS name"):
        ca.issue_server_certificate(key.public_key(), now=now)
    with pytest.raises(CertificateError, match="not an IP address"):
        ca.issue_server_certificate(key.public_key(), ip_addresses=["localhost"], now=now)


def test_ca_certificate_is_not_an_agent_identity(ca: CertificateAuthority, now: datetime) -> None:
    with pytest.raises(CertificateError, match="rejected"):
        ca.verify_agent_certificate(ca.certificate, now=now)


def test_fleet_name_is_validated(now: datetime) -> None:
    with pytest.raises(ValidationError, match="fleet name 'Acme Corp'") as caught:
        CertificateAuthority.create("Acme Corp", now=now)
    assert caught.value.problems[0].field_path == "fleet"


def test_server_certificate_is_not_an_agent_identity(
    ca: CertificateAuthority, now: datetime
) -> None:
    key = generate_private_key()
    cert = ca.issue_server_certificate(key.public_key(), dns_names=["localhost"], now=now)
    with pytest.raises(CertificateError, match="rejected"):
        ca.verify_agent_certificate(cert, now=now)


def test_expired_and_not_yet_valid_certificates_are_rejected(
    ca: CertificateAuthority, now: datetime
) -> None:
    cert = _agent_cert(ca, now)
    ca.verify_agent_certificate(cert, now=now + timedelta(minutes=59))
    with pytest.raises(CertificateError, match="expired at"):
        ca.verify_agent_certificate(cert, now=now + timedelta(hours=1, seconds=1))
    with pytest.raises(CertificateError, match="not valid before"):
        ca.verify_agent_certificate(cert, now=now - CLOCK_SKEW - timedelta(seconds=1))


def test_custom_lifetime_is_capped_by_the_ca(now: datetime) -> None:
    short_ca = CertificateAuthority.create("acme", now=now, lifetime=timedelta(minutes=30))
    cert = _agent_cert(short_ca, now)
    assert cert.not_valid_after_utc == now + timedelta(minutes=30)
    with pytest.raises(CertificateError, match="CA expired"):
        _agent_cert(short_ca, now + timedelta(hours=1))


def test_certificate_from_another_ca_is_rejected(
    ca: CertificateAuthority, other_ca: CertificateAuthority, now: datetime
) -> None:
    cert = _agent_cert(other_ca, now)
    with pytest.raises(CertificateError, match="issued by this fleet's CA"):
        ca.verify_agent_certificate(cert, now=now)


def test_certificate_from_a_ca_of_another_fleet_is_rejected(
    ca: CertificateAuthority, now: datetime
) -> None:
    foreign = CertificateAuthority.create("globex", now=now)
    key = generate_private_key()
    cert = foreign.issue_agent_certificate(
        build_csr(key, SpiffeId("globex", "s", "a")), site="s", agent_id="a", now=now
    )
    with pytest.raises(CertificateError):
        ca.verify_agent_certificate(cert, now=now)


def test_revoked_serial_is_rejected(ca: CertificateAuthority, now: datetime) -> None:
    cert = _agent_cert(ca, now)
    other = _agent_cert(ca, now)
    ca.verify_agent_certificate(cert, now=now, revoked_serials={other.serial_number})
    with pytest.raises(CertificateError, match="revoked"):
        ca.verify_agent_certificate(cert, now=now, revoked_serials={cert.serial_number})


def test_identity_comes_from_the_caller_not_the_csr(
    ca: CertificateAuthority, now: datetime
) -> None:
    key = generate_private_key()
    csr = build_csr(key, SpiffeId("acme", "hq", "root"))
    assert requested_spiffe_id(load_csr(csr)) == SpiffeId("acme", "hq", "root")
    cert = ca.issue_agent_certificate(csr, site="store-012", agent_id="a7", now=now)
    identity = ca.verify_agent_certificate(cert, now=now)
    assert (identity.site, identity.agent_id) == ("store-012", "a7")


def _tampered_csr() -> bytes:
    key = generate_private_key()
    der = load_csr(build_csr(key, SpiffeId("acme", "s", "agent-1"))).public_bytes(
        serialization.Encoding.DER
    )
    # Same length, different subject: still parses, signature no longer matches.
    tampered = der.replace(b"agent-1", b"agent-2", 1)
    assert tampered != der
    return tampered


def test_csr_with_bad_signature_is_rejected(ca: CertificateAuthority, now: datetime) -> None:
    tampered = _tampered_csr()
    with pytest.raises(CertificateError, match="signature does not verify"):
        load_csr(tampered)
    with pytest.raises(CertificateError, match="signature does not verify"):
        ca.issue_agent_certificate(tampered, site="s", agent_id="a", now=now)
    with pytest.raises(CertificateError, match="signature does not verify"):
        ca.issue_agent_certificate(
            x509.load_der_x509_csr(tampered), site="s", agent_id="a", now=now
        )


def test_csr_garbage_and_rsa_keys_are_rejected() -> None:
    with pytest.raises(CertificateError, match="not valid PEM or DER"):
        load_csr(b"hello")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "a")]))
        .sign(rsa_key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    with pytest.raises(CertificateError, match="unsupported key"):
        load_csr(rsa_csr)


def test_issue_rejects_bad_names(ca: CertificateAuthority, now: datetime) -> None:
    csr = build_csr(generate_private_key(), SpiffeId("acme", "s", "a"))
    with pytest.raises(ValueError, match="site name"):
        ca.issue_agent_certificate(csr, site="Store_1", agent_id="a", now=now)
    with pytest.raises(CertificateError, match="lifetime must be positive"):
        ca.issue_agent_certificate(csr, site="s", agent_id="a", now=now, lifetime=timedelta(0))


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("https://acme/site/s/agent/a", "not a SPIFFE ID"),
        ("spiffe://acme/site/s", "not an agent SPIFFE ID"),
        ("spiffe://acme/region/s/agent/a", "not an agent SPIFFE ID"),
        ("spiffe://acme/site/s/agent/a/extra", "not an agent SPIFFE ID"),
        ("spiffe://acme/site/S/agent/a", "site name"),
        ("spiffe://acme/site/s/agent/", "agent id"),
        ("spiffe:///site/s/agent/a", "fleet name"),
    ],
)
def test_spiffe_id_parse_errors(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SpiffeId.parse(uri)


def test_spiffe_id_round_trip() -> None:
    spiffe_id = SpiffeId.parse("spiffe://acme.example/site/store-012/agent/node-7.a")
    assert spiffe_id == SpiffeId("acme.example", "store-012", "node-7.a")
    assert SpiffeId.parse(spiffe_id.uri) == spiffe_id


def test_load_certificate_accepts_pem_text_der_and_objects(
    ca: CertificateAuthority, now: datetime
) -> None:
    cert = _agent_cert(ca, now)
    pem = certificate_pem(cert)
    der = cert.public_bytes(serialization.Encoding.DER)
    assert load_certificate(pem) == load_certificate(pem.decode()) == load_certificate(der) == cert
    with pytest.raises(CertificateError, match="not a PEM or DER"):
        load_certificate(b"\x00\x01")


def test_save_and_load_with_passphrase(tmp_path: Path, now: datetime) -> None:
    original = CertificateAuthority.create("acme", now=now)
    original.save(tmp_path, passphrase=b"correct horse")
    key_file = tmp_path / "ca.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert b"ENCRYPTED" in key_file.read_bytes()
    loaded = CertificateAuthority.load(tmp_path, passphrase=b"correct horse")
    assert loaded.certificate == original.certificate
    assert loaded.fleet == "acme"
    # The loaded CA issues certificates the original verifies (same key).
    original.verify_agent_certificate(_agent_cert(loaded, now), now=now)
    with pytest.raises(CertificateError, match="wrong passphrase"):
        CertificateAuthority.load(tmp_path, passphrase=b"wrong")
    with pytest.raises(CertificateError, match="pass the CA passphrase"):
        CertificateAuthority.load(tmp_path)


def test_save_without_passphrase_and_missing_files(tmp_path: Path, now: datetime) -> None:
    CertificateAuthority.create("acme", now=now).save(tmp_path)
    assert b"ENCRYPTED" not in (tmp_path / "ca.key").read_bytes()
    assert CertificateAuthority.load(tmp_path).fleet == "acme"
    with pytest.raises(CertificateError, match="not encrypted"):
        CertificateAuthority.load(tmp_path, passphrase=b"x")
    with pytest.raises(CertificateError, match=r"ca\.crt: CA file not found"):
        CertificateAuthority.load(tmp_path / "nowhere")


def test_mismatched_key_and_foreign_ca_certificate_are_rejected(
    ca: CertificateAuthority, other_ca: CertificateAuthority, now: datetime
) -> None:
    with pytest.raises(CertificateError, match="does not belong"):
        CertificateAuthority.from_pem(ca.certificate_pem, other_ca.private_key_pem())
    key = generate_private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not fleetplane")])
    plain = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(CertificateError, match="names no fleet"):
        CertificateAuthority(plain, key)
