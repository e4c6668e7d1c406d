"""Serving the agent port next to the human API: the fleet CA, the port's certificate, uvicorn.

``fleetplane serve --agent-listen HOST:PORT --ca-dir DIR`` keeps the fleet CA
in DIR (``ca.crt``, ``ca.key`` 0600; created on first start) and issues the
port a fresh server certificate from it on every start, so agents need only
``ca.crt`` to trust the port. The port speaks TLS with optional client
certificates (enrolment happens before an agent has one) through
:class:`~fleetplane.control.mtls.PeerCertificateProtocol`, which hands the
verified peer certificate to the app.
"""

from __future__ import annotations

import asyncio.sslproto
import contextlib
import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from fleetplane.control.agent_api.app import agent_ssl_context
from fleetplane.control.mtls import peer_certificate_protocol
from fleetplane.control.settings import Listen
from fleetplane.errors import Problem, ValidationError
from fleetplane.security.ca import CA_CERT_FILE, CA_KEY_FILE, CertificateAuthority, certificate_pem
from fleetplane.security.keys import generate_private_key, private_key_pem

PORT_CERT_FILE = "agent-port.crt"
AGENT_KEEP_ALIVE_SECONDS = 75
# asyncio gives every TLS connection a 256 KiB read buffer (3.11+): 1 GiB for
# 2,000 agents holding a watch and a status connection each. TLS records are
# at most 16 KiB, so 32 KiB reads lose nothing.
TLS_READ_BUFFER_BYTES = 32 * 1024
PORT_KEY_FILE = "agent-port.key"


def load_or_create_ca(directory: Path, fleet: str) -> CertificateAuthority:
    """The fleet CA kept in ``directory``; a new one (saved there) when it holds none yet."""
    if (directory / CA_CERT_FILE).exists() or (directory / CA_KEY_FILE).exists():
        ca = CertificateAuthority.load(directory)
        if ca.fleet != fleet:
            raise ValidationError(
                Problem(
                    f"the CA in {directory} belongs to fleet {ca.fleet!r}, not {fleet!r}",
                    field_path="--fleet",
                    hint=f"run with --fleet {ca.fleet}, or point --ca-dir at this fleet's CA",
                )
            )
        return ca
    ca = CertificateAuthority.create(fleet)
    ca.save(directory)
    return ca


def _subject_names(host: str) -> tuple[list[str], list[str]]:
    """DNS names and IP addresses the port's certificate must carry for ``host``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return [host, "localhost"], ["127.0.0.1"]
    if address.is_unspecified:
        # Listening everywhere: agents may dial any of the machine's names.
        return [socket.gethostname(), "localhost"], ["127.0.0.1", "::1"]
    return ["localhost"], sorted({str(address), "127.0.0.1"})


def issue_port_certificate(
    ca: CertificateAuthority, directory: Path, host: str
) -> tuple[Path, Path]:
    """Write a fresh certificate and key for the agent port into ``directory``; their paths."""
    key = generate_private_key()
    dns_names, ip_addresses = _subject_names(host)
    certificate = ca.issue_server_certificate(
        key.public_key(), dns_names=dns_names, ip_addresses=ip_addresses
    )
    cert_file, key_file = directory / PORT_CERT_FILE, directory / PORT_KEY_FILE
    cert_file.write_bytes(certificate_pem(certificate))
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(private_key_pem(key))
    os.chmod(key_file, 0o600)
    return cert_file, key_file


def _shrink_tls_read_buffers() -> None:
    """Smaller per-connection TLS read buffers for every server of this process.

    asyncio builds its ``SSLProtocol`` itself (no factory to pass), so the
    class attribute sizing the buffer is the only handle there is.
    """
    protocol: Any = asyncio.sslproto.SSLProtocol
    if getattr(protocol, "max_size", 0) > TLS_READ_BUFFER_BYTES:
        protocol.max_size = TLS_READ_BUFFER_BYTES


class AgentPortServer(uvicorn.Server):
    """The agent port's uvicorn server; it leaves signals to the human API's server.

    Two servers in one process must not both install signal handlers (the
    second would replace the first's): the human server's handler stops both.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def agent_port_server(
    app: Any,
    listen: Listen,
    ca: CertificateAuthority,
    directory: Path,
    *,
    log_level: str = "info",
) -> AgentPortServer:
    cert_file, key_file = issue_port_certificate(ca, directory, listen.host)
    config = uvicorn.Config(
        app,
        host=listen.host,
        port=listen.port,
        http=peer_certificate_protocol(),
        ssl_certfile=str(cert_file),
        ssl_keyfile=str(key_file),
        log_level=log_level,
        # The human API's lifespan opens and closes the store both apps share.
        lifespan="off",
        timeout_graceful_shutdown=5,
        # Agents write every few seconds: uvicorn's 5 s default would close their
        # connections in between, and every write would pay a new TLS handshake.
        timeout_keep_alive=AGENT_KEEP_ALIVE_SECONDS,
        # Agents connect directly (a proxy in between could not pass their client
        # certificates on): X-Forwarded-* headers are not theirs to set.
        proxy_headers=False,
        # One line per heartbeat of every agent: only when debugging. (uvicorn
        # formats the line's fields before the logger's level is even checked.)
        access_log=log_level in ("debug", "trace"),
    )
    config.load()
    _shrink_tls_read_buffers()
    # uvicorn builds its context from paths; ours also verifies client
    # certificates against the fleet CA, strictly, when one is presented.
    config.ssl = agent_ssl_context(cert_file, key_file, ca)
    return AgentPortServer(config)

