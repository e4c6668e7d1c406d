"""An agent's client certificate put where the TLS layer puts the peer's, for in-process apps."""

from __future__ import annotations

from typing import Any

from fleetplane.control.mtls import CLIENT_CERT_KEY, TLS_EXTENSION


class WithCertificate:
    """ASGI wrapper: every HTTP request carries ``der`` as its TLS peer certificate."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.der: bytes | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "extensions": {TLS_EXTENSION: {CLIENT_CERT_KEY: self.der}}}
        await self.app(scope, receive, send)
