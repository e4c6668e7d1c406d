"""Artifacts over HTTP: pushes and reads for people, blob downloads for agents.

People (``/api/v1/artifacts``, API token): operators and admins push
(begin an upload, PUT its parts, commit name+version → digest); everyone
with a token lists and reads records. Agents (``/agent/v1/artifacts/<digest>``,
agent port, client certificate) download a blob only when their site's
desired state names its digest — anything else is 403.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from fleetplane.control.agent_api.identity import identity_of
from fleetplane.control.api.auth import authenticate, limit, plane_of, require
from fleetplane.control.api.status import ApiError
from fleetplane.control.plane import ControlPlane
from fleetplane.control.store import artifact_removal
from fleetplane.control.store import artifacts as store
from fleetplane.security.rbac import Principal, Verb

KIND = "Artifact"
router = APIRouter(prefix="/api/v1/artifacts", tags=["artifacts"])
agent_router = APIRouter(prefix="/agent/v1/artifacts", tags=["agent artifacts"])
Caller = Annotated[Principal, Depends(authenticate)]


class FileBody(BaseModel):
    # No control characters: PostgreSQL's JSONB refuses NUL.
    path: str = Field(min_length=1, max_length=4096, pattern=r"^[^\x00-\x1f]+$")
    size: int = Field(ge=0)
    sha256: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    executable: bool = False


class PushBody(BaseModel):
    """name+version → digest; ``uploadId`` when the bytes were just uploaded."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    name: str = Field(max_length=253)
    version: str = Field(max_length=128)
    digest: str = Field(max_length=71)
    upload_id: str | None = Field(default=None, alias="uploadId", pattern=r"^[0-9a-f]{32}$")
    files: list[FileBody] = Field(default_factory=list)


def _refused(error: store.ArtifactError) -> ApiError:
    return ApiError(error.code, str(error))


def _check(function: Any, *args: Any) -> None:
    try:
        function(*args)
    except store.ArtifactError as error:
        raise _refused(error) from None


async def _call(function: Any, *args: Any) -> Any:
    try:
        return await run_in_threadpool(function, *args)
    except store.ArtifactError as error:
        raise _refused(error) from None


@router.post("/uploads", status_code=201, summary="Begin an upload (then PUT its parts)")
async def begin_upload(request: Request, caller: Caller) -> dict[str, Any]:
    await require(request, caller, Verb.CREATE, KIND)
    limit(request, caller)
    plane = plane_of(request)
    upload_id = await _call(store.begin_upload, plane.engine, caller.name)
    return {"uploadId": upload_id, "partBytes": store.CHUNK_BYTES,
            "maxBytes": store.MAX_ARTIFACT_BYTES}


@router.put("/uploads/{upload_id}/parts/{seq}",
            summary="One part of an upload (raw bytes, at most partBytes); parts count from 0")
async def put_part(request: Request, caller: Caller, upload_id: str, seq: int) -> dict[str, Any]:
    await require(request, caller, Verb.CREATE, KIND)
    _check(store.check_upload_id, upload_id)
    if seq < 0 or seq > store.MAX_ARTIFACT_BYTES // store.CHUNK_BYTES:
        raise ApiError(400, f"part number {seq} is out of range")
    data = await request.body()
    received = await _call(store.put_part, plane_of(request).engine, upload_id, seq, data)
    return {"uploadId": upload_id, "part": seq, "received": received}


@router.head("/blobs/{digest}", summary="Whether the server holds a blob (then no upload)")
async def has_blob(request: Request, caller: Caller, digest: str) -> Response:
    await require(request, caller, Verb.GET, KIND)
    _check(store.check_digest, digest)
    size = await run_in_threadpool(store.blob_size, plane_of(request).engine, digest)
    if size is None:
        return Response(status_code=404)
    return Response(status_code=200, headers={"Content-Length": str(size)})


@router.post("", summary="Record name+version → digest, from a finished upload or a stored blob")
async def push(request: Request, caller: Caller, body: PushBody) -> JSONResponse:
    await require(request, caller, Verb.CREATE, KIND)
    limit(request, caller)
    request_push = store.Push(
        name=body.name, version=body.version, digest=body.digest,
        files=[entry.model_dump() for entry in body.files], upload_id=body.upload_id,
    )
    plane = plane_of(request)
    artifact, created = await _call(store.commit, plane.store, request_push, caller.name)
    return JSONResponse(artifact.to_json(), status_code=201 if created else 200)


@router.get("", summary="List artifacts (optionally of one name)")
async def list_artifacts(
    request: Request, caller: Caller,
    name: Annotated[str | None, Query(max_length=253)] = None,
) -> dict[str, Any]:
    await require(request, caller, Verb.LIST, KIND)
    if name is not None:
        _check(store.check_name, name, "1")
    found = await _call(store.list_artifacts, plane_of(request).engine, name)
    return {"items": [artifact.to_json() for artifact in found]}


@router.get("/{name}/{version}", summary="One artifact: digest, size and files")
async def get_artifact(request: Request, caller: Caller, name: str, version: str
                       ) -> dict[str, Any]:
    await require(request, caller, Verb.GET, KIND, name=f"{name}:{version}")
    _check(store.check_name, name, version)
    artifact = await _call(store.get, plane_of(request).engine, name, version)
    result: dict[str, Any] = artifact.to_json()
    return result


@router.delete("/{name}/{version}",
               summary="Delete a release no Workload runs; its blob goes once no site names it")
async def delete_artifact(request: Request, caller: Caller, name: str, version: str
                          ) -> dict[str, Any]:
    await require(request, caller, Verb.DELETE, KIND, name=f"{name}:{version}")
    limit(request, caller)
    removal = await _call(artifact_removal.delete_artifact, plane_of(request).store, name,
                          version, caller.name)
    result: dict[str, Any] = removal.to_json()
    return result


@router.post("/gc", summary="Remove blobs no release or site names, and abandoned uploads")
async def collect_garbage(request: Request, caller: Caller) -> dict[str, Any]:
    await require(request, caller, Verb.DELETE, KIND)
    limit(request, caller)
    removal = await _call(artifact_removal.collect_garbage, plane_of(request).store,
                          caller.name)
    result: dict[str, Any] = removal.to_json()
    return result


@agent_router.get("/{digest}", summary="The blob of a digest the agent's desired state names",
                  response_model=None)
async def download(request: Request, digest: str) -> Response:
    identity = identity_of(request.scope)
    if identity is None:
        raise ApiError(401, "an agent certificate is required")
    # RBAC 'agent-referenced': the name checked is the digest, against the site's desired state.
    await require(request, identity.principal(), Verb.GET, KIND, name=digest)
    _check(store.check_digest, digest)
    plane = plane_of(request)
    size = await run_in_threadpool(store.blob_size, plane.engine, digest)
    if size is None:
        raise ApiError(404, f"no blob {digest} on this server: push the artifact again")
    return StreamingResponse(
        _stream(plane, digest), media_type="application/octet-stream",
        headers={"Content-Length": str(size), "X-Fleetplane-Digest": digest},
    )


async def _stream(plane: ControlPlane, digest: str) -> AsyncIterator[bytes]:
    chunks = store.blob_chunks(plane.engine, digest)
    while True:
        data = await run_in_threadpool(next, chunks, None)
        if data is None:
            return
        yield data
