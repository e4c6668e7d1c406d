"""Who is calling on the agent port: the client certificate, checked against the fleet CA."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

from fleetplane.control.api.auth import PRINCIPAL_SCOPE_KEY
from fleetplane.control.api.status import status_body
from fleetplane.control.mtls import peer_certificate
from fleetplane.security.ca import AgentIdentity, CertificateAuthority
from fleetplane.security.errors import CertificateError

IDENTITY_SCOPE_KEY = "fleetplane.agent"
# Paths an agent may call before it holds a certificate.
OPEN_PATHS = frozenset({"/agent/v1/enrol", "/agent/v1/reenrol", "/healthz"})

Send = Callable[[dict[str, Any]], Awaitable[None]]


# Verified certificates remembered (by their DER bytes) so keep-alive requests
# skip the chain check; validity and revocation are still checked every time.
VERIFIED_CACHE_SIZE = 20_000


class AgentIdentityMiddleware:
    """Turn the peer certificate into a Principal (role agent, bound to its site) for RBAC."""

    def __init__(self, app: Any, ca: CertificateAuthority, revoked: set[int]) -> None:
        self.app = app
        self.ca = ca
        self.revoked = revoked
        self._verified: dict[bytes, AgentIdentity] = {}

    def identify(self, der: bytes) -> AgentIdentity:
        """The identity a peer certificate proves; CertificateError when it proves none."""
        return self._identity(der)

    def _identity(self, der: bytes) -> AgentIdentity:
        now = datetime.now(UTC)
        known = self._verified.get(der)
        if (
            known is not None
            and known.not_before <= now < known.not_after
            and known.serial not in self.revoked
        ):
            return known
        # Not cached, expired or revoked: the full check says which, in its own words.
        identity = self.ca.verify_agent_certificate(der, now=now, revoked_serials=self.revoked)
        if len(self._verified) >= VERIFIED_CACHE_SIZE:
            self._verified.clear()
        self._verified[der] = identity
        return identity

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        der = peer_certificate(scope)
        if der is not None:
            try:
                identity = self._identity(der)
            except CertificateError as error:
                await _refuse(send, f"client certificate refused: {error}")
                return
            scope = {
                **scope,
                PRINCIPAL_SCOPE_KEY: identity.principal(),
                IDENTITY_SCOPE_KEY: identity,
            }
        elif scope["path"] not in OPEN_PATHS:
            await _refuse(
                send,
                "this is the agent port: present the agent's client certificate "
                "(enrol first with POST /agent/v1/enrol and a bootstrap token)",
            )
            return
        await self.app(scope, receive, send)


def identity_of(scope: MutableMapping[str, Any]) -> AgentIdentity | None:
    found = scope.get(IDENTITY_SCOPE_KEY)
    return found if isinstance(found, AgentIdentity) else None


async def _refuse(send: Send, message: str) -> None:
    import json

    body = json.dumps(status_body(401, message)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
