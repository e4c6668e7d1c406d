"""A uvicorn HTTP protocol that hands the TLS peer certificate to the app.

Stock uvicorn verifies client certificates but never tells the app which
one was presented. This protocol reads it once per connection, right after
the handshake, and puts the DER bytes into every request's scope under
``scope["extensions"]["tls"]["client_cert_der"]`` (None without one).
Select it with ``uvicorn.Config(..., http=peer_certificate_protocol())``:
the httptools-based parser when httptools is installed (several times
less CPU per request than h11), else h11.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

TLS_EXTENSION = "tls"
CLIENT_CERT_KEY = "client_cert_der"

ASGIApp = Any


def peer_certificate(scope: dict[str, Any]) -> bytes | None:
    der = scope.get("extensions", {}).get(TLS_EXTENSION, {}).get(CLIENT_CERT_KEY)
    return der if isinstance(der, bytes) else None


class _WithPeerCertificate:
    def __init__(self, app: ASGIApp, der: bytes | None) -> None:
        self.app = app
        self.der = der

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] in ("http", "websocket"):
            extensions = dict(scope.get("extensions") or {})
            extensions[TLS_EXTENSION] = {CLIENT_CERT_KEY: self.der}
            scope = {**scope, "extensions": extensions}
        await self.app(scope, receive, send)


def _peer_der(transport: asyncio.Transport) -> bytes | None:
    ssl_object = transport.get_extra_info("ssl_object")
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    return der if isinstance(der, bytes) else None


class PeerCertificateProtocol(H11Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.app = _WithPeerCertificate(self.app, _peer_der(transport))


def peer_certificate_protocol() -> type[asyncio.Protocol]:
    """The fastest HTTP protocol available, handing the peer certificate to the app."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:
        return PeerCertificateProtocol

    class FastPeerCertificateProtocol(HttpToolsProtocol):
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.app = _WithPeerCertificate(self.app, _peer_der(transport))

    return FastPeerCertificateProtocol
