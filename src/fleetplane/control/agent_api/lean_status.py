"""The agent's status write served before the FastAPI app: the agent port's hot path.

Every agent writes its site's status every few seconds; through the full
stack (identity middleware, FastAPI's middleware, routing, dependency
injection, RBAC, pydantic, the response class) that cost ≈ 1.7 ms of CPU per
write, most of a core at 600 writes/s. :class:`LeanStatusWrite` intercepts
exactly ``PUT /apis/fleetplane/v1/sites/<site>/status`` and serves the
ordinary case itself: a verified certificate of that very site, a body
within the limit, JSON of the expected shape, a served agent version, a
valid ``SiteStatus``, and a token left in the agent's rate-limit bucket (the
server's per-identity limit on writes, shared with the route). The write goes to the same
:class:`~fleetplane.control.agent_api.heartbeat.HeartbeatBatcher` as the
route's.

Anything else is handed to the full app, with the body already read
replayed to it, so every refusal (401 without or with a refused
certificate, 413, 403 with its audit entry, 400, 422, 426, 429) is the full
app's own answer, word for word and in the same order of checks. The only
answer given here besides success is 404 for a site that does not exist
(found by the batched write itself), built the way the route builds it. The
FastAPI route stays: it documents the operation in OpenAPI and serves any
request this path hands over.

A status whose body is byte-for-byte the one last validated for the same
site is not validated as a ``SiteStatus`` again (agents send the same status
until something changes on the site); the agent's version is checked on
every write.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from fleetplane.control.agent_api.heartbeat import (
    HeartbeatBatcher,
    check_agent_version,
    heartbeat_now,
    status_change,
)
from fleetplane.control.agent_api.identity import AgentIdentityMiddleware
from fleetplane.control.api.auth import limit_key
from fleetplane.control.api.status import ApiError, status_body
from fleetplane.control.mtls import peer_certificate
from fleetplane.control.ratelimit import RateLimiter
from fleetplane.control.store.errors import NotFound
from fleetplane.model.infrastructure import SiteStatus
from fleetplane.security.errors import CertificateError
from fleetplane.security.rbac import Principal, Verb, authorize

PREFIX = "/apis/fleetplane/v1/sites/"
SUFFIX = "/status"
# Bounded like the identity middleware's cache of verified certificates.
VALIDATED_CACHE_SIZE = 20_000

Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[dict[str, Any], Receive, Send], Awaitable[None]]

_JSON_HEADERS = [(b"content-type", b"application/json")]


def status_site(scope: dict[str, Any]) -> str | None:
    """The site of a ``PUT …/sites/<site>/status`` request this path serves, else None."""
    if scope["type"] != "http" or scope["method"] != "PUT" or scope.get("root_path"):
        return None
    path: str = scope["path"]
    if not (path.startswith(PREFIX) and path.endswith(SUFFIX)):
        return None
    site = path[len(PREFIX):-len(SUFFIX)]
    return site if site and "/" not in site else None


class LeanStatusWrite:
    """ASGI: serve agents' status writes directly; everything else goes to ``fallback``.

    ``fallback`` is the agent port's full app (the identity middleware around
    the FastAPI app); its certificate cache is shared.
    """

    def __init__(
        self,
        fallback: AgentIdentityMiddleware,
        batcher: HeartbeatBatcher,
        limiter: RateLimiter,
        *,
        max_body_bytes: int,
    ) -> None:
        self.app = fallback
        self.batcher = batcher
        self.limiter = limiter
        self.max_body_bytes = max_body_bytes
        self._allowed: dict[tuple[Principal, str], bool] = {}
        self._validated: dict[str, bytes] = {}
        # Writes answered here (200 or 404), and requests handed to the full app.
        self.served = 0
        self.handed_over = 0

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        site = status_site(scope)
        if site is None:
            await self.app(scope, receive, send)
            return
        der = peer_certificate(scope)
        principal = None
        if der is not None:
            try:
                principal = self.app.identify(der).principal()
            except CertificateError:
                principal = None
        if principal is None or not self._may_write(principal, site):
            await self._hand_over(scope, receive, send, [])
            return
        declared = _content_length(scope)
        if declared is None or declared > self.max_body_bytes:
            await self._hand_over(scope, receive, send, [])
            return
        messages, body = await self._read(receive)
        if body is None:
            await self._hand_over(scope, receive, send, messages)
            return
        status = self._valid_status(site, body)
        # The rate limit last, so a request handed over for any other reason draws on
        # the agent's bucket once (in the route), not twice.
        if status is None or self.limiter.acquire(limit_key(principal)) is not None:
            await self._hand_over(scope, receive, send, messages)
            return
        now = heartbeat_now()
        try:
            stored = await self.batcher.write(site, status_change(status, now))
        except NotFound:
            # The route's answer (error_response of this ApiError), byte for byte.
            await _answer(send, 404, status_body(404, f"site {site!r} not found"))
        else:
            await _answer(send, 200, {
                "site": site, "resourceVersion": str(stored.resource_version), "heartbeat": now,
            })
        self.served += 1

    def _may_write(self, principal: Principal, site: str) -> bool:
        """The route's RBAC question (``require``), its answer remembered per principal and site."""
        key = (principal, site)
        allowed = self._allowed.get(key)
        if allowed is None:
            # As `require` asks it: a Site names its own site; no referenced names for Sites.
            allowed = authorize(
                principal, Verb.UPDATE, "Site", name=site, subresource="status"
            ).allowed
            if len(self._allowed) >= VALIDATED_CACHE_SIZE:
                self._allowed.clear()
            self._allowed[key] = allowed
        return allowed

    async def _read(self, receive: Receive) -> tuple[list[Message], bytes | None]:
        """The messages read and the whole body; body None when it is too large or cut off."""
        messages: list[Message] = []
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages, None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                return messages, None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return messages, b"".join(chunks)

    def _valid_status(self, site: str, body: bytes) -> dict[str, Any] | None:
        """The status the route would accept from ``body``, else None (the route says why)."""
        try:
            document = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return None
        status = document.get("status") if isinstance(document, dict) else None
        if not isinstance(status, dict):
            return None
        try:
            # Every time: it is cheap, and the server's version is what it is now.
            check_agent_version(status.get("agentVersion"))
            if self._validated.get(site) == body:
                return status
            SiteStatus.model_validate(status)
        except (ApiError, ValueError):
            return None
        if len(self._validated) >= VALIDATED_CACHE_SIZE:
            self._validated.clear()
        self._validated[site] = body
        return status

    async def _hand_over(
        self, scope: dict[str, Any], receive: Receive, send: Send, read: list[Message]
    ) -> None:
        """Let the full app answer, replaying the messages already read from the client."""
        self.handed_over += 1
        pending = list(read)

        async def replayed() -> Message:
            if pending:
                return pending.pop(0)
            return await receive()

        await self.app(scope, replayed, send)


def _content_length(scope: dict[str, Any]) -> int | None:
    for key, value in scope["headers"]:
        if key.lower() == b"content-length":
            text = value.decode("latin-1").strip()
            return int(text) if text.isdigit() else None
    return None


async def _answer(send: Send, code: int, content: dict[str, Any]) -> None:
    """What Starlette's JSONResponse sends for ``content``, without building one."""
    body = json.dumps(
        content, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")
    await send({
        "type": "http.response.start",
        "status": code,
        "headers": [(b"content-length", str(len(body)).encode("ascii")), *_JSON_HEADERS],
    })
    await send({"type": "http.response.body", "body": body})
