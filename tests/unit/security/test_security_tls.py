"""Real TLS handshakes on loopback with certificates from the fleet CA.

Both sides use VERIFY_X509_STRICT (Python 3.13's default), so a missing
AKI/SKI or a wrong key usage would fail here, not first in production.
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fleetplane.security import (
    CertificateAuthority,
    SpiffeId,
    build_csr,
    certificate_pem,
    generate_private_key,
    private_key_pem,
)
from fleetplane.security.tls import client_context, server_context

# Socket timeout: only a guard so a broken test fails instead of hanging.
_GUARD_SECONDS = 10


@dataclass
class _ServerOutcome:
    peer_der: bytes | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


def _write_pair(directory: Path, stem: str, cert_pem: bytes, key_pem: bytes) -> tuple[Path, Path]:
    cert_file, key_file = directory / f"{stem}.crt", directory / f"{stem}.key"
    cert_file.write_bytes(cert_pem)
    key_file.write_bytes(key_pem)
    return cert_file, key_file


@pytest.fixture
def real_now() -> datetime:
    # OpenSSL checks validity against the wall clock, so these certificates
    # are issued for the real current time.
    return datetime.now(UTC)


@pytest.fixture
def server_files(tmp_path: Path, ca: CertificateAuthority, real_now: datetime) -> tuple[Path, Path]:
    key = generate_private_key()
    cert = ca.issue_server_certificate(
        key.public_key(), dns_names=["localhost"], ip_addresses=["127.0.0.1"], now=real_now
    )
    return _write_pair(tmp_path, "server", certificate_pem(cert), private_key_pem(key))


def _agent_files(
    directory: Path, issuer: CertificateAuthority, now: datetime, stem: str
) -> tuple[Path, Path]:
    key = generate_private_key()
    csr = build_csr(key, SpiffeId("acme", "store-012", "a1"))
    cert = issuer.issue_agent_certificate(csr, site="store-012", agent_id="a1", now=now)
    return _write_pair(directory, stem, certificate_pem(cert), private_key_pem(key))


def _serve_once(listener: socket.socket, context: ssl.SSLContext, outcome: _ServerOutcome) -> None:
    try:
        connection, _ = listener.accept()
        connection.settimeout(_GUARD_SECONDS)
        with context.wrap_socket(connection, server_side=True) as tls:
            outcome.peer_der = tls.getpeercert(binary_form=True)
            tls.sendall(b"hello agent")
    except (ssl.SSLError, OSError) as error:
        outcome.error = error
    finally:
        outcome.done.set()


def _handshake(
    ca: CertificateAuthority,
    server_files: tuple[Path, Path],
    client_files: tuple[Path, Path] | None,
) -> tuple[_ServerOutcome, bytes | BaseException]:
    server_ctx = server_context(*server_files, client_ca_pem=ca.certificate_pem)
    client_ctx = client_context(
        ca.certificate_pem,
        cert_file=client_files[0] if client_files else None,
        key_file=client_files[1] if client_files else None,
    )
    outcome = _ServerOutcome()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(_GUARD_SECONDS)
        thread = threading.Thread(target=_serve_once, args=(listener, server_ctx, outcome))
        thread.start()
        client_result: bytes | BaseException
        try:
            with (
                socket.create_connection(listener.getsockname(), timeout=_GUARD_SECONDS) as raw,
                client_ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
            ):
                # With TLS 1.3 the server rejects a client certificate after
                # the client's side of the handshake finished: read to see it.
                client_result = tls.recv(64)
        except (ssl.SSLError, OSError) as error:
            client_result = error
        thread.join(_GUARD_SECONDS)
    assert outcome.done.is_set()
    return outcome, client_result


def test_mutual_tls_with_agent_certificate_succeeds(
    tmp_path: Path,
    ca: CertificateAuthority,
    server_files: tuple[Path, Path],
    real_now: datetime,
) -> None:
    client_files = _agent_files(tmp_path, ca, real_now, "agent")
    outcome, client_result = _handshake(ca, server_files, client_files)
    assert outcome.error is None
    assert client_result == b"hello agent"
    assert outcome.peer_der is not None
    identity = ca.verify_agent_certificate(outcome.peer_der, now=real_now)
    assert identity.spiffe_id == SpiffeId("acme", "store-012", "a1")


def test_client_certificate_from_another_ca_is_refused(
    tmp_path: Path,
    ca: CertificateAuthority,
    other_ca: CertificateAuthority,
    server_files: tuple[Path, Path],
    real_now: datetime,
) -> None:
    client_files = _agent_files(tmp_path, other_ca, real_now, "intruder")
    outcome, client_result = _handshake(ca, server_files, client_files)
    assert isinstance(outcome.error, ssl.SSLError)
    assert "certificate verify failed" in str(outcome.error)
    assert outcome.peer_der is None
    assert client_result != b"hello agent"


def test_client_without_certificate_is_refused(
    ca: CertificateAuthority, server_files: tuple[Path, Path]
) -> None:
    outcome, client_result = _handshake(ca, server_files, None)
    assert isinstance(outcome.error, ssl.SSLError)
    assert outcome.peer_der is None
    assert client_result != b"hello agent"


def test_agent_refuses_a_server_from_another_ca(
    tmp_path: Path,
    ca: CertificateAuthority,
    other_ca: CertificateAuthority,
    real_now: datetime,
) -> None:
    key = generate_private_key()
    cert = other_ca.issue_server_certificate(
        key.public_key(), ip_addresses=["127.0.0.1"], now=real_now
    )
    impostor = _write_pair(tmp_path, "impostor", certificate_pem(cert), private_key_pem(key))
    client_files = _agent_files(tmp_path, ca, real_now, "agent")
    outcome, client_result = _handshake(ca, impostor, client_files)
    assert isinstance(client_result, ssl.SSLCertVerificationError)
    assert outcome.peer_der is None
