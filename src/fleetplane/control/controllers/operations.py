"""Operator commands on sites (human port): cordon, uncordon, drain, lost, bootstrap tokens.

Each is one audited transaction. Cordon and drain change the Site's spec
(the placement controller reads them); Lost is a status the reachability
controller never sets on its own unless a grace period is configured.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from sqlalchemy import Connection
from starlette.concurrency import run_in_threadpool

from fleetplane.control.agent_api.credentials import save_bootstrap_token
from fleetplane.control.api.auth import authenticate, limit, plane_of, require
from fleetplane.control.api.status import ApiError
from fleetplane.control.controllers.transactions import load_resource
from fleetplane.control.store.audit import AuditEntry
from fleetplane.control.store.errors import NotFound
from fleetplane.control.store.records import StoredResource
from fleetplane.control.store.repository import Desired
from fleetplane.model.units import parse_duration
from fleetplane.security.bootstrap import create_bootstrap_token
from fleetplane.security.rbac import Principal, Verb

router = APIRouter(prefix="/apis/fleetplane/v1/sites", tags=["site operations"])

# operation → (RBAC subresource, spec changes)
_SPEC_OPERATIONS: dict[str, tuple[str, dict[str, bool]]] = {
    "cordon": ("cordon", {"cordoned": True}),
    "uncordon": ("cordon", {"cordoned": False, "draining": False}),
    "drain": ("drain", {"cordoned": True, "draining": True}),
}


@router.post(
    "/{name}/bootstrap-tokens",
    status_code=201,
    summary="A one-time token an agent of this site enrols with (shown once)",
)
async def bootstrap_token(
    request: Request,
    name: str,
    ttl: str = "15m",
    caller: Principal = Depends(authenticate),  # noqa: B008 - FastAPI dependency
) -> dict[str, Any]:
    plane = plane_of(request)
    await require(request, caller, Verb.CREATE, "BootstrapToken", site=name)
    limit(request, caller)
    try:
        lifetime = timedelta(seconds=parse_duration(ttl))
    except ValueError as error:
        raise ApiError(422, f"ttl {ttl!r}: {error} (e.g. 15m, 1h)") from None
    try:
        await run_in_threadpool(plane.store.get, "Site", name)
    except NotFound:
        raise ApiError(
            404, f"site {name!r} not found: apply it before enrolling its agent"
        ) from None
    plaintext, record = create_bootstrap_token(name, lifetime, now=datetime.now(UTC))
    await run_in_threadpool(save_bootstrap_token, plane.store, record, caller.name)
    return {
        "token": plaintext,
        "tokenId": record.token_id,
        "site": name,
        "expiresAt": record.expires_at.isoformat(),
    }


@router.post("/{name}/{operation}", summary="Cordon, uncordon or drain a site, or declare it lost")
async def site_operation(
    request: Request,
    name: str,
    operation: str,
    caller: Principal = Depends(authenticate),  # noqa: B008 - FastAPI dependency
) -> dict[str, Any]:
    plane = plane_of(request)
    if operation == "lost":
        await require(request, caller, Verb.UPDATE, "Site", name=name, subresource="lost")
        limit(request, caller)
        updated = await run_in_threadpool(_declare_lost, plane.store, name, caller.name)
        return updated.to_document()
    if operation not in _SPEC_OPERATIONS:
        raise ApiError(
            404,
            f"unknown site operation {operation!r}; use cordon, uncordon, drain or lost",
        )
    subresource, changes = _SPEC_OPERATIONS[operation]
    await require(request, caller, Verb.UPDATE, "Site", name=name, subresource=subresource)
    limit(request, caller)

    def change(current: StoredResource) -> Desired:
        return Desired(
            "Site", name, current.labels, current.annotations, {**current.spec, **changes}
        )

    try:
        updated = await run_in_threadpool(
            plane.store.modify, "Site", name, change, actor=caller.name
        )
    except NotFound:
        raise ApiError(404, f"site {name!r} not found") from None
    return updated.to_document()


def _declare_lost(store: Any, name: str, actor: str) -> StoredResource:
    def write(connection: Connection) -> StoredResource:
        current = load_resource(store, connection, "Site", name)
        if current is None:
            raise ApiError(404, f"site {name!r} not found")
        status = {**(current.status or {}), "reachability": "Lost"}
        updated: StoredResource = store._update_status(connection, current, status)
        store.audit.append(
            connection,
            AuditEntry(actor=actor, action="site.lost", kind="Site", name=name),
        )
        return updated

    result: StoredResource = store.run_write(write)
    return result
