"""``/api/v1/tokens`` and ``/api/v1/audit``: API tokens and the audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from fleetplane.control.api.auth import authenticate, limit, plane_of, require
from fleetplane.control.api.status import invalid
from fleetplane.control.store.tokens import list_tokens, revoke_token, save_token
from fleetplane.errors import Problem, UnitError
from fleetplane.model.units import parse_duration
from fleetplane.security.audit import AuditRecord
from fleetplane.security.rbac import Principal, Verb
from fleetplane.security.tokens import TokenRecord, create_token

router = APIRouter(prefix="/api/v1", tags=["security"])
Caller = Annotated[Principal, Depends(authenticate)]


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=128)
    role: str = Field(max_length=32)
    ttl: str = Field(default="30d", max_length=32, description="lifetime, e.g. 12h or 30d")


def _token_json(record: TokenRecord, created_by: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": record.token_id,
        "name": record.name,
        "role": record.role.value,
        "createdAt": record.created_at.isoformat(),
        "expiresAt": record.expires_at.isoformat(),
        "revokedAt": record.revoked_at.isoformat() if record.revoked_at else None,
        "expired": record.is_expired(),
    }
    if created_by is not None:
        out["createdBy"] = created_by
    return out


def _ttl(text: str) -> timedelta:
    try:
        seconds = parse_duration(text)
    except (UnitError, ValueError, TypeError) as error:
        raise invalid([Problem(str(error), field_path="ttl", hint="e.g. 12h, 30d")]) from None
    if not 0 < seconds <= 10 * 365 * 86400:
        raise invalid([Problem("ttl must be between 1s and 10 years", field_path="ttl")])
    return timedelta(seconds=seconds)


@router.post("/tokens", status_code=201, summary="Create an API token (shown once)")
async def create(request: Request, body: TokenRequest, caller: Caller) -> dict[str, Any]:
    await require(request, caller, Verb.CREATE, "ApiToken", name=body.name)
    limit(request, caller)
    plaintext, record = create_token(body.name, body.role, _ttl(body.ttl), now=datetime.now(UTC))
    await run_in_threadpool(save_token, plane_of(request).store, record, actor=caller.name)
    return {**_token_json(record, caller.name), "token": plaintext}


@router.get("/tokens", summary="List API tokens (never their secrets)")
async def list_all(request: Request, caller: Caller) -> dict[str, Any]:
    await require(request, caller, Verb.LIST, "ApiToken")
    tokens = await run_in_threadpool(list_tokens, plane_of(request).store)
    return {"kind": "ApiTokenList", "items": [_token_json(r, by) for r, by in tokens]}


@router.delete("/tokens/{token_id}", summary="Revoke an API token")
async def revoke(request: Request, token_id: str, caller: Caller) -> dict[str, Any]:
    await require(request, caller, Verb.DELETE, "ApiToken", name=token_id)
    limit(request, caller)
    record = await run_in_threadpool(
        revoke_token, plane_of(request).store, token_id, actor=caller.name, now=datetime.now(UTC)
    )
    return _token_json(record)


def _audit_json(record: AuditRecord) -> dict[str, Any]:
    return record.to_dict()


@router.get("/audit", summary="Read the audit log, oldest first")
async def audit_log(
    request: Request,
    caller: Caller,
    after: Annotated[int, Query(ge=0, le=2**62, description="only records after this seq")] = 0,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> dict[str, Any]:
    await require(request, caller, Verb.LIST, "AuditEvent")
    plane = plane_of(request)
    records = await run_in_threadpool(
        plane.store.audit.records, plane.engine, after=after, limit=limit
    )
    return {"kind": "AuditEventList", "items": [_audit_json(r) for r in records]}


@router.get("/audit/verify", summary="Verify the audit log's hash chain")
async def audit_verify(request: Request, caller: Caller) -> dict[str, Any]:
    await require(request, caller, Verb.LIST, "AuditEvent")
    plane = plane_of(request)
    result = await run_in_threadpool(plane.store.audit.verify, plane.engine)
    return {
        "kind": "AuditVerification",
        "ok": result.ok,
        "checked": result.checked,
        "firstBadSeq": result.first_bad_seq,
        "problem": result.problem,
        "head": {"seq": result.head.seq, "hash": result.head.hash} if result.head else None,
        "keyed": plane.store.audit.keyring is not None,
    }
