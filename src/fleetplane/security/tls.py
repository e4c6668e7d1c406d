"""``ssl.SSLContext`` factories for the agent port and for agents.

Both enable ``VERIFY_X509_STRICT`` (the default from Python 3.13 on), so a
certificate that newer Pythons would reject fails here too, and require
TLS 1.2 or newer. uvicorn builds its own context from file paths; use these
where a context is accepted (httpx ``verify=``, asyncio servers, tests).
"""

from __future__ import annotations

import ssl
from pathlib import Path


def _harden(context: ssl.SSLContext, ca_pem: bytes) -> None:
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.load_verify_locations(cadata=ca_pem.decode("ascii"))


def server_context(
    cert_file: Path, key_file: Path, *, client_ca_pem: bytes | None = None
) -> ssl.SSLContext:
    """A server context; with ``client_ca_pem`` clients must present a certificate from that CA."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    if client_ca_pem is not None:
        _harden(context, client_ca_pem)
        context.verify_mode = ssl.CERT_REQUIRED
    else:
        context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def client_context(
    ca_pem: bytes, *, cert_file: Path | None = None, key_file: Path | None = None
) -> ssl.SSLContext:
    """A client context trusting ``ca_pem``, presenting a client certificate if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    _harden(context, ca_pem)
    if cert_file is not None:
        context.load_cert_chain(cert_file, key_file)
    return context
