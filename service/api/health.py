"""Liveness and readiness probes."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency, Provide
from litestar.openapi import ResponseSpec

from service.api.deps import Resources, provide_resources
from service.api.schemas.health import Health
from service.auth.guard import PUBLIC
from service.db import answers


@get("/healthz", operation_id="healthz", summary="The process is up", tags=["health"], opt=PUBLIC)
async def healthz() -> Health:
    return Health(status="ok")


@get(
    "/readyz",
    operation_id="readyz",
    summary="The process can reach PostgreSQL",
    tags=["health"],
    opt=PUBLIC,
    dependencies={"luc": Provide(provide_resources)},
    responses={503: ResponseSpec(Health, description="PostgreSQL cannot be reached")},
)
async def readyz(luc: NamedDependency[Resources]) -> Response[Health]:
    if not await answers(luc.pool):
        return Response(Health(status="database unavailable"), status_code=503)
    return Response(Health(status="ready"))
