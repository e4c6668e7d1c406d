"""Enrol (bootstrap token), rotate (current certificate), re-enrol (renewal credential)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from fleetplane.control.agent_api.credentials import (
    consume_bootstrap_token,
    find_bootstrap_token,
    find_renewal_credential,
    insert_renewal_credential,
)
from fleetplane.control.agent_api.heartbeat import check_agent_version
from fleetplane.control.agent_api.identity import identity_of
from fleetplane.control.api.auth import plane_of, require
from fleetplane.control.api.status import ApiError
from fleetplane.control.store.audit import AuditEntry
from fleetplane.security.bootstrap import bootstrap_token_id, check_bootstrap_token
from fleetplane.security.ca import CertificateAuthority, certificate_pem
from fleetplane.security.csr import load_csr
from fleetplane.security.errors import SecurityError, TokenError
from fleetplane.security.rbac import Verb
from fleetplane.security.renewal import (
    check_renewal_credential,
    issue_renewal_credential,
    renewal_credential_id,
)

router = APIRouter(prefix="/agent/v1", tags=["agent enrolment"])

_AGENT_ID = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


class EnrolRequest(BaseModel):
    token: str = Field(description="the one-time bootstrap token (fpb_…)")
    csr: str = Field(description="PEM certificate signing request for the agent's key")
    agent_id: str = Field(alias="agentId", description="this agent's id within its site")
    agent_version: str | None = Field(default=None, alias="agentVersion")


class ReenrolRequest(BaseModel):
    renewal_credential: str = Field(alias="renewalCredential")
    csr: str
    agent_version: str | None = Field(default=None, alias="agentVersion")


class RotateRequest(BaseModel):
    csr: str


def _ca(request: Request) -> CertificateAuthority:
    ca: CertificateAuthority = request.app.state.ca
    return ca


def _lifetime(request: Request) -> timedelta:
    lifetime: timedelta = request.app.state.certificate_lifetime
    return lifetime


def _issued(request: Request, csr: Any, site: str, agent_id: str, now: datetime) -> dict[str, Any]:
    certificate = _ca(request).issue_agent_certificate(
        csr, site=site, agent_id=agent_id, now=now, lifetime=_lifetime(request)
    )
    return {
        "certificate": certificate_pem(certificate).decode("ascii"),
        "caCertificate": _ca(request).certificate_pem.decode("ascii"),
        "notAfter": certificate.not_valid_after_utc.isoformat(),
        "site": site,
        "agentId": agent_id,
    }


def _csr(text: str) -> Any:
    try:
        return load_csr(text.encode("ascii"))
    except (SecurityError, ValueError) as error:
        raise ApiError(422, f"csr: {error}") from None


@router.post("/enrol", summary="Exchange a bootstrap token and a CSR for a certificate")
async def enrol(request: Request, body: EnrolRequest) -> dict[str, Any]:
    plane = plane_of(request)
    check_agent_version(body.agent_version)
    if not _AGENT_ID.match(body.agent_id):
        raise ApiError(422, f"agentId {body.agent_id!r}: use lowercase letters, digits and '-'")
    now = datetime.now(UTC)
    try:
        record = await run_in_threadpool(
            find_bootstrap_token, plane.store, bootstrap_token_id(body.token)
        )
        if record is None:
            raise ApiError(401, "unknown bootstrap token (it was never issued here)")
        check_bootstrap_token(body.token, record, now=now)
    except TokenError as error:
        raise ApiError(401, str(error)) from None
    # The CSR is checked before the token is spent.
    csr = _csr(body.csr)
    answer = _issued(request, csr, record.site, body.agent_id, now)
    plaintext, renewal = issue_renewal_credential(record.site, body.agent_id, now=now)

    def write(connection: Connection) -> None:
        consume_bootstrap_token(connection, record, body.agent_id, now)
        insert_renewal_credential(connection, renewal)
        plane.store.audit.append(
            connection,
            AuditEntry(actor=f"agent:{record.site}/{body.agent_id}", action="agent.enrol",
                       kind="Certificate", name=body.agent_id,
                       details={"site": record.site, "bootstrapToken": record.token_id}),
        )

    try:
        await run_in_threadpool(plane.store.run_write, write)
    except TokenError as error:
        raise ApiError(401, str(error)) from None
    return {**answer, "renewalCredential": plaintext}


@router.post("/reenrol", summary="After the certificate expired: a renewal credential and a CSR")
async def reenrol(request: Request, body: ReenrolRequest) -> dict[str, Any]:
    plane = plane_of(request)
    check_agent_version(body.agent_version)
    now = datetime.now(UTC)
    try:
        record = await run_in_threadpool(
            find_renewal_credential, plane.store, renewal_credential_id(body.renewal_credential)
        )
        if record is None:
            raise ApiError(401, "unknown renewal credential")
        check_renewal_credential(body.renewal_credential, record, now=now)
    except TokenError as error:
        raise ApiError(401, str(error)) from None
    csr = _csr(body.csr)
    answer = _issued(request, csr, record.site, record.agent_id, now)
    plaintext, renewal = issue_renewal_credential(record.site, record.agent_id, now=now)

    def write(connection: Connection) -> None:
        insert_renewal_credential(connection, renewal)
        plane.store.audit.append(
            connection,
            AuditEntry(actor=f"agent:{record.site}/{record.agent_id}", action="agent.reenrol",
                       kind="Certificate", name=record.agent_id, details={"site": record.site}),
        )

    await run_in_threadpool(plane.store.run_write, write)
    return {**answer, "renewalCredential": plaintext}


@router.post("/certificate", summary="Rotate: the current certificate and a new CSR")
async def rotate(request: Request, body: RotateRequest) -> dict[str, Any]:
    identity = identity_of(request.scope)
    if identity is None:
        raise ApiError(401, "rotation needs the agent's current client certificate")
    await require(request, identity.principal(), Verb.CREATE, "Certificate", site=identity.site)
    return _issued(
        request, _csr(body.csr), identity.site, identity.agent_id, datetime.now(UTC)
    )
