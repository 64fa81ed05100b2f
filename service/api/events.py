"""``POST /v1/events`` and ``POST /v1/events/batch``: answers come after commit."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency, Provide

from service.api.deps import Resources, provide_resources
from service.api.schemas import BatchResult, EventResult
from service.auth.guard import INGEST
from service.db import on_connection
from service.ingest.models import Rejection, UsageEvent
from service.ingest.validate import parse_batch, parse_single
from service.record import (
    ACCEPTED,
    CONFLICT,
    DUPLICATE,
    REJECTED,
    BatchOutcome,
    record_batch,
    rejected_only,
)

SINGLE_STATUS = {ACCEPTED: 201, DUPLICATE: 200, CONFLICT: 409, REJECTED: 422}


class EventsController(Controller):
    path = "/v1/events"
    tags = ["ingest"]
    opt = INGEST
    dependencies = {"luc": Provide(provide_resources)}

    @post(
        "/",
        operation_id="ingestEvent",
        summary="Record one usage event",
        description=(
            "Validates, prices and records one event. 201 accepted, 200 duplicate (same id and "
            "content, counted once), 409 conflict (same id, other content; the first stays), "
            "422 rejected with the reason."
        ),
        status_code=201,
        responses={},
    )
    async def ingest_one(
        self, request: Request[Any, Any, Any], luc: NamedDependency[Resources]
    ) -> Response[EventResult]:
        body = await request.body()
        item = parse_single(body, datetime.now(UTC), luc.settings.ingest)
        outcome = await _record(luc, [item])
        result = outcome.results[0]
        return Response(
            EventResult(id=result.id, status=result.status, reason=result.reason),
            status_code=SINGLE_STATUS[result.status],
        )

    @post(
        "/batch",
        operation_id="ingestEventBatch",
        summary="Record a batch of usage events",
        description=(
            'Body: {"events": [...]}. One transaction for the whole batch; each event gets its '
            "own outcome (accepted, duplicate, conflict, rejected) in request order, and a bad "
            "event never sinks the good ones beside it."
        ),
        status_code=200,
    )
    async def ingest_batch(
        self, request: Request[Any, Any, Any], luc: NamedDependency[Resources]
    ) -> BatchResult:
        body = await request.body()
        parsed = parse_batch(body, datetime.now(UTC), luc.settings.ingest)
        outcome = await _record(luc, parsed.items)
        return BatchResult(
            accepted=outcome.count(ACCEPTED),
            duplicates=outcome.count(DUPLICATE),
            conflicts=outcome.count(CONFLICT),
            rejected=outcome.count(REJECTED),
            results=[
                EventResult(id=r.id, status=r.status, reason=r.reason) for r in outcome.results
            ],
        )


async def _record(luc: Resources, items: Sequence[UsageEvent | Rejection]) -> BatchOutcome:
    started = time.perf_counter()
    if not any(isinstance(i, UsageEvent) for i in items):
        outcome = rejected_only(items)  # nothing to store: answers even with the database down
    else:
        outcome = await on_connection(
            luc.pool, lambda conn: record_batch(conn, luc.catalog_cache, items)
        )
    luc.metrics.ingest_seconds.observe(time.perf_counter() - started)
    luc.metrics.batch_events.observe(len(items))
    for status in (ACCEPTED, DUPLICATE, CONFLICT, REJECTED):
        if count := outcome.count(status):
            luc.metrics.events.labels(status).inc(count)
    if outcome.alerts and luc.dispatcher is not None:
        luc.dispatcher.wake()
    return outcome
