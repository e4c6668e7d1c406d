"""The agent-facing app, served on --agent-listen with TLS and client certificates.

One TLS port with ``CERT_OPTIONAL``: the handshake verifies any certificate
presented against the fleet CA, and :class:`AgentIdentityMiddleware` lets
requests without one reach only ``/agent/v1/enrol`` and ``/agent/v1/reenrol``
(an agent without a certificate has nothing else to do). Everything else is
the human API's resource routes with the agent's principal: RBAC then allows
exactly its own site's desired state, its own status, and the Secrets its
desired state names; every other path answers 403.
"""

from __future__ import annotations

import ssl
from collections.abc import Collection
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI

from fleetplane import __version__
from fleetplane.control.agent_api import desired, enrolment, heartbeat, telemetry
from fleetplane.control.agent_api.identity import AgentIdentityMiddleware
from fleetplane.control.agent_api.lean_status import LeanStatusWrite
from fleetplane.control.api import artifacts, resources
from fleetplane.control.api.middleware import BodyLimit
from fleetplane.control.api.status import install_handlers
from fleetplane.control.controllers.derive import referenced_artifacts, referenced_secrets
from fleetplane.control.plane import ControlPlane, ReferencedNames
from fleetplane.control.store.errors import NotFound
from fleetplane.security.ca import DEFAULT_AGENT_CERT_LIFETIME, CertificateAuthority
from fleetplane.security.rbac import Principal, Role


def create_agent_app(
    plane: ControlPlane,
    ca: CertificateAuthority,
    *,
    certificate_lifetime: timedelta = DEFAULT_AGENT_CERT_LIFETIME,
    revoked_serials: set[int] | None = None,
) -> LeanStatusWrite:
    app = FastAPI(title="fleetplane agent port", version=__version__)
    app.state.plane = plane
    app.state.ca = ca
    app.state.certificate_lifetime = certificate_lifetime
    app.state.revision_hub = desired.RevisionHub(plane)
    app.state.heartbeats = heartbeat.HeartbeatBatcher(plane)
    plane.referenced = _referenced(plane)
    install_handlers(app)

    @app.get("/healthz", summary="The agent port is up (no certificate needed)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(enrolment.router)
    # Before the generic routes: these answer the same paths with agent semantics.
    app.include_router(desired.router)
    app.include_router(heartbeat.router)
    app.include_router(telemetry.router)
    app.include_router(artifacts.agent_router)
    app.include_router(resources.router)
    app.add_middleware(BodyLimit, max_bytes=plane.settings.limits.max_body_bytes)
    revoked = revoked_serials if revoked_serials is not None else set()
    # Agents' status writes skip the stack above (same answers, a fraction of the CPU).
    return LeanStatusWrite(
        AgentIdentityMiddleware(app, ca, revoked),
        app.state.heartbeats,
        plane.limiter,
        max_body_bytes=plane.settings.limits.max_body_bytes,
    )


def _referenced(plane: ControlPlane) -> ReferencedNames:
    def names(principal: Principal, kind: str) -> Collection[str]:
        if principal.role is not Role.AGENT or principal.site is None or kind not in (
            "Secret", "Artifact"
        ):
            return frozenset()
        try:
            state = plane.store.get("SiteDesiredState", principal.site)
        except NotFound:
            return frozenset()
        workloads = state.spec.get("workloads", [])
        # Artifacts are named by digest: the agent downloads blobs, not name+version.
        if kind == "Artifact":
            return referenced_artifacts(workloads)
        return referenced_secrets(workloads)

    return names



def agent_ssl_context(cert_file: Path, key_file: Path, ca: CertificateAuthority) -> ssl.SSLContext:
    """TLS for the agent port: client certificates verified when presented (CERT_OPTIONAL)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    context.load_verify_locations(cadata=ca.certificate_pem.decode("ascii"))
    context.verify_flags |= ssl.VERIFY_X509_STRICT
    context.verify_mode = ssl.CERT_OPTIONAL
    return context
