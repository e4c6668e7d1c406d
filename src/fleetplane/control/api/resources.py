"""``/apis/fleetplane/v1/<plural>[/<name>[/status]]``: CRUD, list and watch of resources."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from fleetplane.control.api.auth import authenticate, limit, plane_of, require
from fleetplane.control.api.status import ApiError, invalid
from fleetplane.control.api.watch import WatchRequest, open_watch
from fleetplane.control.merge_patch import merge_patch
from fleetplane.control.plane import ControlPlane
from fleetplane.control.selectors import parse_selector
from fleetplane.control.store.records import StoredResource
from fleetplane.control.store.repository import Desired
from fleetplane.control.validation import check_status, parse_document, unknown_kind
from fleetplane.errors import Problem, ValidationError
from fleetplane.model.base import API_VERSION
from fleetplane.model.kinds import KINDS
from fleetplane.security.rbac import STATUS, Principal, Verb

PREFIX = "/apis/fleetplane/v1"
PLURALS: dict[str, str] = {cls.PLURAL: kind for kind, cls in KINDS.items()}
# Versions are BIGINT in the database; larger numbers cannot be ours.
MAX_VERSION = 2**63 - 1

router = APIRouter(prefix=PREFIX, tags=["resources"])
Caller = Annotated[Principal, Depends(authenticate)]

_OBJECT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "object", "description": "a resource document"}
            }
        },
    }
}
_PATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/merge-patch+json": {
                "schema": {"type": "object", "description": "a JSON merge patch (RFC 7386)"}
            },
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


def kind_of(plural: str) -> str:
    kind = PLURALS.get(plural.lower())
    if kind is None:
        raise unknown_kind(plural)
    return kind


def present(plane: ControlPlane, resource: StoredResource) -> dict[str, Any]:
    """The document a caller sees (Secrets opened: callers were authorised for them)."""
    return plane.store.reveal(resource).to_document()


async def read_json(request: Request) -> Any:
    body = await request.body()
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"the request body is not valid JSON: {error}") from None


@router.get("", summary="Discover the resource kinds this server serves")
async def discovery(_caller: Caller) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "groupVersion": API_VERSION,
        "resources": [
            {
                "name": cls.PLURAL,
                "kind": kind,
                "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                "subresources": ["status"],
            }
            for kind, cls in KINDS.items()
        ],
    }


@router.get(
    "/{plural}",
    summary="List resources of a kind, or watch them (watch=true streams NDJSON events)",
    response_model=None,
)
async def list_or_watch(
    request: Request,
    plural: str,
    caller: Caller,
    label_selector: Annotated[str | None, Query(alias="labelSelector", max_length=4096)] = None,
    watch: bool = False,
    resource_version: Annotated[
        str | None, Query(alias="resourceVersion", max_length=20)
    ] = None,
    timeout_seconds: Annotated[
        float | None, Query(alias="timeoutSeconds", ge=0, le=86400)
    ] = None,
    allow_bookmarks: Annotated[bool, Query(alias="allowWatchBookmarks")] = True,
) -> Response:
    kind = kind_of(plural)
    plane = plane_of(request)
    selector = _selector(label_selector)
    if watch:
        await require(request, caller, Verb.WATCH, kind)
        watch_request = WatchRequest(
            kind=kind,
            selector=selector,
            since=_version(resource_version),
            timeout=timeout_seconds,
            bookmarks=allow_bookmarks,
        )
        stream = await open_watch(plane, watch_request, request.receive)
        return StreamingResponse(stream, media_type="application/x-ndjson")
    await require(request, caller, Verb.LIST, kind)
    items, version = await run_in_threadpool(plane.store.list_resources, kind, where=selector)
    documents = [present(plane, item) for item in items]
    return JSONResponse(
        {
            "apiVersion": API_VERSION,
            "kind": f"{kind}List",
            "metadata": {"resourceVersion": str(version)},
            "items": documents,
        }
    )


@router.post(
    "/{plural}", status_code=201, summary="Create a resource", openapi_extra=_OBJECT_BODY
)
async def create(request: Request, plural: str, caller: Caller) -> JSONResponse:
    kind = kind_of(plural)
    plane = plane_of(request)
    document = await read_json(request)
    name = _body_name(document)
    await require(request, caller, Verb.CREATE, kind, name=name)
    limit(request, caller)
    batch = parse_document(_expect_kind(document, kind))
    created = await run_in_threadpool(
        plane.store.create,
        batch.desired[0],
        actor=caller.name,
        check=batch.check(plane.models),
    )
    return JSONResponse(present(plane, created), status_code=201)


@router.get("/{plural}/{name}", summary="Read a resource")
async def get(request: Request, plural: str, name: str, caller: Caller) -> dict[str, Any]:
    kind = kind_of(plural)
    plane = plane_of(request)
    await require(request, caller, Verb.GET, kind, name=name)
    resource = await run_in_threadpool(plane.store.get, kind, name)
    return present(plane, resource)


@router.put(
    "/{plural}/{name}",
    summary="Replace a resource (metadata.resourceVersion: only if unchanged since)",
    openapi_extra=_OBJECT_BODY,
)
async def replace(request: Request, plural: str, name: str, caller: Caller) -> dict[str, Any]:
    kind = kind_of(plural)
    plane = plane_of(request)
    await require(request, caller, Verb.UPDATE, kind, name=name)
    limit(request, caller)
    document = _expect_kind(await read_json(request), kind)
    _expect_name(document, name)
    batch = parse_document(document)
    replaced = await run_in_threadpool(
        plane.store.replace,
        batch.desired[0],
        actor=caller.name,
        check=batch.check(plane.models),
    )
    return present(plane, replaced)


@router.patch(
    "/{plural}/{name}",
    summary="Change a resource with a JSON merge patch",
    openapi_extra=_PATCH_BODY,
)
async def patch(request: Request, plural: str, name: str, caller: Caller) -> dict[str, Any]:
    kind = kind_of(plural)
    plane = plane_of(request)
    await require(request, caller, Verb.PATCH, kind, name=name)
    limit(request, caller)
    patch_body = _patch_object(await read_json(request))
    checks: list[Any] = []

    def change(current: StoredResource) -> Desired:
        merged = merge_patch(_without_server_fields(current.to_document()), patch_body)
        _expect_kind(merged, kind)
        _expect_name(merged, name)
        batch = parse_document(merged)
        checks.append(batch.check(plane.models))
        return batch.desired[0]

    def check(state: Any) -> None:
        checks[-1](state)

    patched = await run_in_threadpool(
        plane.store.modify, kind, name, change, actor=caller.name, check=check
    )
    return present(plane, patched)


@router.delete("/{plural}/{name}", summary="Delete a resource")
async def delete(
    request: Request,
    plural: str,
    name: str,
    caller: Caller,
    resource_version: Annotated[
        str | None, Query(alias="resourceVersion", max_length=20)
    ] = None,
) -> dict[str, Any]:
    kind = kind_of(plural)
    plane = plane_of(request)
    await require(request, caller, Verb.DELETE, kind, name=name)
    limit(request, caller)
    deleted = await run_in_threadpool(
        plane.store.delete,
        kind,
        name,
        actor=caller.name,
        expected_version=_version(resource_version),
    )
    # The last state, redacted like an event: a deleted Secret's values stay sealed.
    return deleted.to_document()


@router.get("/{plural}/{name}/status", summary="Read a resource's status")
async def get_status(
    request: Request, plural: str, name: str, caller: Caller
) -> dict[str, Any]:
    kind = kind_of(plural)
    plane = plane_of(request)
    await require(request, caller, Verb.GET, kind, name=name, subresource=STATUS)
    resource = await run_in_threadpool(plane.store.get, kind, name)
    return present(plane, resource)


@router.put(
    "/{plural}/{name}/status",
    summary="Replace a resource's status (its owner only)",
    openapi_extra=_OBJECT_BODY,
)
async def replace_status(
    request: Request, plural: str, name: str, caller: Caller
) -> dict[str, Any]:
    kind = kind_of(plural)
    plane = plane_of(request)
    await require(request, caller, Verb.UPDATE, kind, name=name, subresource=STATUS)
    limit(request, caller)
    document = _expect_kind(await read_json(request), kind)
    _expect_name(document, name)
    expected = _version(str(document["metadata"].get("resourceVersion") or "") or None)

    def change(current: StoredResource) -> Desired:
        status = check_status(kind, current.to_document(), document.get("status"))
        return _status_desired(current, status, expected)

    updated = await run_in_threadpool(
        plane.store.modify, kind, name, change, actor=caller.name, status=True
    )
    return present(plane, updated)


@router.patch(
    "/{plural}/{name}/status",
    summary="Change a resource's status with a JSON merge patch (its owner only)",
    openapi_extra=_PATCH_BODY,
)
async def patch_status(
    request: Request, plural: str, name: str, caller: Caller
) -> dict[str, Any]:
    kind = kind_of(plural)
    plane = plane_of(request)
    await require(request, caller, Verb.PATCH, kind, name=name, subresource=STATUS)
    limit(request, caller)
    patch_body = _patch_object(await read_json(request))
    metadata = patch_body.get("metadata")
    expected_text = metadata.get("resourceVersion") if isinstance(metadata, dict) else None
    expected = _version(str(expected_text)) if expected_text is not None else None

    def change(current: StoredResource) -> Desired:
        merged = merge_patch({"status": current.status or {}}, patch_body)
        status = check_status(kind, current.to_document(), merged.get("status"))
        return _status_desired(current, status, expected)

    updated = await run_in_threadpool(
        plane.store.modify, kind, name, change, actor=caller.name, status=True
    )
    return present(plane, updated)


# ------------------------------------------------------------------ helpers


def _selector(text: str | None) -> Any:
    try:
        return parse_selector(text)
    except ValidationError as error:
        raise invalid(error.problems, code=400) from None


def _version(text: str | None) -> int | None:
    if text is None or text == "":
        return None
    if not text.isdigit() or int(text) > MAX_VERSION:
        raise invalid(
            [
                Problem(
                    f"resourceVersion must be a number from this server, got {text!r}",
                    field_path="resourceVersion",
                )
            ],
            code=400,
        )
    return int(text)


def _body_name(document: Any) -> str | None:
    if isinstance(document, dict):
        metadata = document.get("metadata")
        if isinstance(metadata, dict) and isinstance(metadata.get("name"), str):
            return str(metadata["name"])
    return None


def _expect_kind(document: Any, kind: str) -> dict[str, Any]:
    if not isinstance(document, dict):
        raise ApiError(400, "the request body must be a JSON object (a resource document)")
    body_kind = document.get("kind", kind)
    if body_kind != kind:
        raise invalid(
            [Problem(f"kind {body_kind!r} does not match the URL's kind {kind!r}", None, "kind")],
            code=400,
        )
    return {"apiVersion": API_VERSION, **document, "kind": kind}


def _expect_name(document: dict[str, Any], name: str) -> None:
    metadata = document.get("metadata")
    if not isinstance(metadata, dict):
        raise invalid([Problem("missing metadata", field_path="metadata")], code=422)
    if metadata.get("name") != name:
        raise invalid(
            [
                Problem(
                    f"metadata.name {metadata.get('name')!r} does not match the URL's "
                    f"name {name!r}",
                    field_path="metadata.name",
                    hint="resources cannot be renamed; create a new one and delete the old",
                )
            ],
            code=400,
        )


def _patch_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "a merge patch must be a JSON object")
    return body


_SERVER_FIELDS = ("uid", "generation", "creationTimestamp", "updateTimestamp")


def _without_server_fields(document: dict[str, Any]) -> dict[str, Any]:
    """The document a patch applies to: no server-written metadata, no version check."""
    metadata = {
        k: v
        for k, v in document["metadata"].items()
        if k not in (*_SERVER_FIELDS, "resourceVersion")
    }
    out = {**document, "metadata": metadata}
    out.pop("status", None)
    return out


def _status_desired(
    current: StoredResource, status: dict[str, Any] | None, expected: int | None
) -> Desired:
    return Desired(
        current.kind,
        current.name,
        current.labels,
        current.annotations,
        current.spec,
        status,
        expected,
    )
