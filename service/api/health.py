"""Liveness and readiness probes."""

from __future__ import annotations

import os

from litestar import Response, get
from litestar.datastructures import State
from litestar.openapi import ResponseSpec

from service.api.deps import Resources, started
from service.api.errors import RETRY_AFTER_SECONDS
from service.api.params import ANY_QUERY
from service.api.schemas.health import GatewayReadiness, Health, Readiness
from service.auth.guard import PUBLIC
from service.db import answers
from service.pricing.catalog import STUB_PROVIDER

# Probes (load balancers, orchestrators) may add a query of their own.
_PROBE = {**PUBLIC, ANY_QUERY: True}


@get("/healthz", operation_id="healthz", summary="The process is up", tags=["health"], opt=_PROBE)
async def healthz() -> Health:
    return Health(status="ok")


def gateway_readiness(luc: Resources) -> GatewayReadiness | None:
    """Whether chat completions reach an LLM: heuristic (stub) mode is said out loud."""
    if luc.gateway is None:
        return None
    chain = luc.gateway.chain
    if chain.heuristic:
        return GatewayReadiness(
            mode="stub",
            chain=chain.names,
            detail="heuristic mode: no provider is configured (OPENROUTER_API_KEY, "
            "LUC_VERTEX_*), so every chat completion is a stub answer; no LLM is called, "
            "its usage is recorded at zero cost and never billed",
        )
    fallback = STUB_PROVIDER in chain.names
    return GatewayReadiness(
        mode="providers",
        chain=chain.names,
        detail="chat completions go to "
        + ", ".join(n for n in chain.names if n != STUB_PROVIDER)
        + ("; the stub answers only when they all fail" if fallback else ""),
    )


@get(
    "/readyz",
    operation_id="readyz",
    summary="The process can reach PostgreSQL; what answers chat completions",
    description="503 when PostgreSQL cannot be reached. gateway.mode is stub when no LLM "
    "provider is configured: chat completions are then canned answers, never billed.",
    tags=["health"],
    opt=_PROBE,
    responses={
        503: ResponseSpec(
            Readiness, description="PostgreSQL cannot be reached, or start-up waits for it"
        )
    },
)
async def readyz(state: State) -> Response[Readiness]:
    luc = started(state)
    pid = os.getpid()
    # Retry-After as on every other route's 503: a script that waits for readiness reads it.
    later = {"Retry-After": RETRY_AFTER_SECONDS}
    if luc is None:
        starting = Readiness("starting: waiting for PostgreSQL", None, pid)
        return Response(starting, status_code=503, headers=later)
    gateway = gateway_readiness(luc)
    if not await answers(luc.pool):
        unavailable = Readiness("database unavailable", gateway, pid)
        return Response(unavailable, status_code=503, headers=later)
    return Response(Readiness("ready", gateway, pid))
