"""Who is calling (authentication) and may they (authorisation, rate limits).

People present ``Authorization: Bearer fp_…`` API tokens. Agents (part of
the agent port) are authenticated by their client certificate before the
request reaches the app: that layer puts a
:class:`~fleetplane.security.rbac.Principal` into the ASGI scope under
:data:`PRINCIPAL_SCOPE_KEY`, and it is used as is. Every decision goes
through :func:`fleetplane.security.rbac.authorize`; refusals of an
identified caller are security events and land in the audit log.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from fleetplane.control.api.status import ApiError
from fleetplane.control.plane import ControlPlane
from fleetplane.control.ratelimit import retry_after_header
from fleetplane.control.store.audit import AuditEntry
from fleetplane.control.store.tokens import find_token
from fleetplane.security.errors import TokenError
from fleetplane.security.rbac import SITE_NAMED_KINDS, Decision, Principal, Verb, authorize
from fleetplane.security.tokens import token_id, verify_token

log = logging.getLogger(__name__)

PRINCIPAL_SCOPE_KEY = "fleetplane.principal"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="fleetplane"'}


def plane_of(request: Request) -> ControlPlane:
    plane: ControlPlane = request.app.state.plane
    return plane


async def authenticate(request: Request) -> Principal:
    """The caller's principal; 401 (or 403 for tokens over plain HTTP off loopback)."""
    preset = request.scope.get(PRINCIPAL_SCOPE_KEY)
    if isinstance(preset, Principal):
        return preset
    plane = plane_of(request)
    header = request.headers.get("authorization")
    if not header:
        plane.metrics.auth_failures.labels("missing").inc()
        raise ApiError(
            401,
            "authentication required: send 'Authorization: Bearer <token>' "
            "(create tokens with `fleetplane token create`)",
            headers=_CHALLENGE,
        )
    scheme, _, credential = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        plane.metrics.auth_failures.labels("malformed").inc()
        raise ApiError(
            401, "the Authorization header must be 'Bearer <token>'", headers=_CHALLENGE
        )
    if not plane.settings.tokens_allowed:
        plane.metrics.auth_failures.labels("insecure").inc()
        raise ApiError(
            403,
            f"this server listens on {plane.settings.listen} without TLS, where tokens would "
            "travel in clear text; it refuses them. Start `fleetplane serve` with "
            "--tls-cert/--tls-key, or listen on a loopback address",
            reason="TLSRequired",
        )
    return await run_in_threadpool(_verify, plane, credential.strip())


def _verify(plane: ControlPlane, credential: str) -> Principal:
    try:
        record = find_token(plane.store, token_id(credential))
        if record is None:
            raise ApiError(
                401, "unknown API token (it was never issued here)", headers=_CHALLENGE
            )
        return verify_token(credential, record, now=datetime.now(UTC))
    except TokenError as error:
        plane.metrics.auth_failures.labels(error.reason).inc()
        # The message names the token id only, never the secret.
        raise ApiError(401, str(error), headers=_CHALLENGE) from None
    except ApiError:
        plane.metrics.auth_failures.labels("unknown").inc()
        raise


async def require(
    request: Request,
    principal: Principal,
    verb: Verb,
    kind: str,
    *,
    name: str | None = None,
    subresource: str | None = None,
    site: str | None = None,
) -> Decision:
    """403 unless the policy allows it (writes then call :func:`limit` once per request)."""
    plane = plane_of(request)
    referenced = plane.referenced(principal, kind) if name is not None else frozenset()
    if site is None and kind not in SITE_NAMED_KINDS:
        # An agent asks on behalf of its own site (for Secrets and Artifacts
        # the policy then checks that the site refers to the object).
        site = principal.site
    decision = authorize(
        principal,
        verb,
        kind,
        site=site,
        name=name,
        subresource=subresource,
        referenced=referenced,
    )
    if not decision.allowed:
        plane.metrics.auth_failures.labels("forbidden").inc()
        await run_in_threadpool(_audit_denied, plane, principal, verb, kind, name, decision)
        raise ApiError(
            403,
            f"forbidden for {principal.name} ({principal.role.value}): {decision.reason}",
            details={"kind": kind, "name": name, "verb": verb.value},
        )
    return decision


def limit_key(principal: Principal) -> str:
    """The token bucket ``principal``'s writes draw on (one per identity)."""
    return f"{principal.role.value}:{principal.name}"


def limit(request: Request, principal: Principal) -> None:
    """429 when ``principal`` writes faster than its token bucket allows."""
    plane = plane_of(request)
    wait = plane.limiter.acquire(limit_key(principal))
    if wait is not None:
        plane.metrics.rate_limited.inc()
        raise ApiError(
            429,
            f"{principal.name} writes faster than {plane.limiter.rate:g}/s "
            f"(burst {plane.limiter.burst}); retry after the delay in Retry-After",
            headers={"Retry-After": retry_after_header(wait)},
        )


def _audit_denied(
    plane: ControlPlane,
    principal: Principal,
    verb: Verb,
    kind: str,
    name: str | None,
    decision: Decision,
) -> None:
    def write(connection: Connection) -> None:
        plane.store.audit.append(
            connection,
            AuditEntry(
                actor=principal.name,
                action="access.denied",
                kind=kind,
                name=name or "",
                details={
                    "verb": verb.value,
                    "role": principal.role.value,
                    "reason": decision.reason,
                },
            ),
        )

    plane.store.run_write(write)
