"""Agents upload interval telemetry: stored idempotently by (site, agent, sequence).

A minimal endpoint for the agent's exactly-once upload; the telemetry
pipeline (sketches, rollups) is its own issue and will read this table. The
site comes from the client certificate, never from the body, and the answer
is the highest sequence stored for the agent, so a client that resends after
a lost answer learns what it may drop. Not audited (like heartbeats).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, Text, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from starlette.concurrency import run_in_threadpool

from fleetplane.control.agent_api.identity import identity_of
from fleetplane.control.api.auth import limit, plane_of
from fleetplane.control.api.status import ApiError
from fleetplane.control.store.database import read_transaction

router = APIRouter(prefix="/agent/v1", tags=["agent telemetry"])

_metadata = MetaData()
telemetry_intervals = Table(
    "agent_telemetry_intervals",
    _metadata,
    Column("site", String(253), primary_key=True),
    Column("agent_id", String(63), primary_key=True),
    Column("sequence", Integer, primary_key=True, autoincrement=False),
    Column("workload", String(253), nullable=False),
    Column("body", Text, nullable=False),
)
MAX_INTERVALS = 1000


class TelemetryUpload(BaseModel):
    agent_id: str = Field(alias="agentId")
    intervals: list[dict[str, Any]] = Field(max_length=MAX_INTERVALS)


def ensure_telemetry_table(engine: Engine) -> None:
    _metadata.create_all(engine, checkfirst=True)


def _store(engine: Engine, site: str, agent_id: str, intervals: list[dict[str, Any]]) -> int:
    ensure_telemetry_table(engine)
    rows = [
        {"site": site, "agent_id": agent_id, "sequence": int(item["sequence"]),
         "workload": str(item.get("workload", "")), "body": json.dumps(item)}
        for item in intervals
    ]
    dialect = engine.dialect.name
    with engine.begin() as connection:
        if rows:
            insert = pg_insert if dialect == "postgresql" else sqlite_insert
            connection.execute(insert(telemetry_intervals).values(rows).on_conflict_do_nothing())
        through = connection.execute(
            select(func.max(telemetry_intervals.c.sequence)).where(
                telemetry_intervals.c.site == site, telemetry_intervals.c.agent_id == agent_id)
        ).scalar()
    return int(through or 0)


def stored_intervals(engine: Engine, site: str) -> list[dict[str, Any]]:
    """Every interval of ``site`` in (agent, sequence) order (for tests and the pipeline)."""
    ensure_telemetry_table(engine)
    with read_transaction(engine) as connection:
        rows = connection.execute(
            select(telemetry_intervals.c.body).where(telemetry_intervals.c.site == site)
            .order_by(telemetry_intervals.c.agent_id, telemetry_intervals.c.sequence)
        ).all()
    return [json.loads(row.body) for row in rows]


@router.post("/telemetry", summary="Upload interval telemetry (idempotent by agent and sequence)")
async def upload(request: Request, body: TelemetryUpload) -> dict[str, Any]:
    identity = identity_of(request.scope)
    if identity is None:
        raise ApiError(401, "an agent certificate is required")
    if body.agent_id != identity.agent_id:
        raise ApiError(403, f"agentId {body.agent_id!r} is not the certificate's "
                            f"({identity.agent_id!r})")
    limit(request, identity.principal())
    for position, item in enumerate(body.intervals):
        if not isinstance(item.get("sequence"), int) or item["sequence"] < 1:
            raise ApiError(422, f"intervals[{position}].sequence: a positive integer is required")
    plane = plane_of(request)
    through = await run_in_threadpool(
        _store, plane.engine, identity.site, identity.agent_id, body.intervals
    )
    return {"through": through}
