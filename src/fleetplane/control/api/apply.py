"""``POST /apis/fleetplane/v1/apply``: many YAML documents, all written or none."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool

from fleetplane.control.api.auth import authenticate, limit, plane_of, require
from fleetplane.control.api.status import ApiError
from fleetplane.control.validation import parse_batch
from fleetplane.model.base import API_VERSION
from fleetplane.security.rbac import Principal, Verb

router = APIRouter(prefix="/apis/fleetplane/v1", tags=["apply"])

_YAML_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            media: {"schema": {"type": "string", "description": "multi-document YAML"}}
            for media in ("application/yaml", "text/plain")
        },
    }
}


@router.post(
    "/apply",
    summary="Create or update every resource of a multi-document YAML in one transaction",
    openapi_extra=_YAML_BODY,
)
async def apply(
    request: Request,
    caller: Annotated[Principal, Depends(authenticate)],
    dry_run: Annotated[bool, Query(alias="dryRun")] = False,
    filename: Annotated[str, Query(max_length=512)] = "<request body>",
) -> dict[str, Any]:
    plane = plane_of(request)
    raw = await request.body()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ApiError(400, f"the YAML must be UTF-8: {error}") from None
    batch = await run_in_threadpool(parse_batch, text, filename)
    if not batch.desired:
        raise ApiError(400, f"{filename}: no documents to apply")
    for desired in batch.desired:
        # Apply creates or updates, so it needs both rights on every object.
        for verb in (Verb.CREATE, Verb.UPDATE):
            await require(request, caller, verb, desired.kind, name=desired.name)
    limit(request, caller)
    outcomes = await run_in_threadpool(
        plane.store.apply,
        batch.desired,
        actor=caller.name,
        dry_run=dry_run,
        check=batch.check(plane.models),
    )
    return {
        "apiVersion": API_VERSION,
        "kind": "ApplyResult",
        "dryRun": dry_run,
        "results": [outcome.to_json() for outcome in outcomes],
    }
