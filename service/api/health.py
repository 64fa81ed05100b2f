"""Liveness and readiness probes."""

from __future__ import annotations

from litestar import Response, get
from litestar.datastructures import State
from litestar.openapi import ResponseSpec

from service.api.deps import started
from service.api.schemas import Health
from service.auth.guard import PUBLIC
from service.db import CONNECTION_ERRORS


@get("/healthz", operation_id="healthz", summary="The process is up", tags=["health"], opt=PUBLIC)
async def healthz() -> Health:
    return Health(status="ok")


@get(
    "/readyz",
    operation_id="readyz",
    summary="The process can reach PostgreSQL",
    tags=["health"],
    opt=PUBLIC,
    responses={
        503: ResponseSpec(
            Health, description="PostgreSQL cannot be reached, or start-up waits for it"
        )
    },
)
async def readyz(state: State) -> Response[Health]:
    luc = started(state)
    if luc is None:
        return Response(Health(status="starting: waiting for PostgreSQL"), status_code=503)
    try:
        async with luc.pool.acquire(timeout=2) as conn:
            await conn.fetchval("SELECT 1")
    except CONNECTION_ERRORS:
        return Response(Health(status="database unavailable"), status_code=503)
    return Response(Health(status="ready"))
