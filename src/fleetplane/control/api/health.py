"""Liveness, readiness and Prometheus metrics; no authentication (they reveal no data)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from fleetplane.control.api.auth import plane_of
from fleetplane.control.api.metrics import CONTENT_TYPE
from fleetplane.control.api.status import status_body
from fleetplane.control.store import migrate
from fleetplane.control.store.database import ping

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="The process is alive")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@router.get("/readyz", summary="The store answers and its schema is current", response_model=None)
async def readyz(request: Request) -> Response:
    plane = plane_of(request)
    try:
        await run_in_threadpool(ping, plane.engine)
        revision = await run_in_threadpool(migrate.current_revision, plane.engine)
    except Exception as error:
        return JSONResponse(
            status_body(503, f"the store does not answer: {type(error).__name__}"),
            status_code=503,
        )
    head = migrate.head_revision()
    if revision != head:
        return JSONResponse(
            status_body(
                503,
                f"the store's schema is at revision {revision}, this server needs {head}: "
                "run `fleetplane db upgrade`",
            ),
            status_code=503,
        )
    body: dict[str, Any] = {"status": "ready", "resourceVersion": str(plane.notifier.version)}
    # Set by the controllers' leader election when it runs in this server.
    leadership = getattr(plane, "leadership", None)
    if leadership is not None:
        body["controllers"] = leadership.details()
    return JSONResponse(body)


@router.get("/metrics", summary="Prometheus metrics of this server", response_model=None)
async def metrics(request: Request) -> Response:
    return Response(plane_of(request).metrics.render(), media_type=CONTENT_TYPE)
