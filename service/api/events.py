"""``POST /v1/events`` and ``POST /v1/events/batch``: answers come after commit."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec

from service.api.deps import LucController, Resources
from service.api.openapi import raw_json_body
from service.api.schemas.common import ErrorBody
from service.api.schemas.events import BATCH_BODY, EVENT_BODY, BatchResult, EventResult
from service.auth.guard import INGEST
from service.db import on_connection
from service.ingest.models import Rejection, UsageEvent
from service.ingest.validate import parse_batch, parse_single
from service.record.service import (
    ACCEPTED,
    CONFLICT,
    DUPLICATE,
    REJECTED,
    BatchOutcome,
    price_only,
    record_apart,
    record_batch,
    rejected_only,
)

SINGLE_STATUS = {ACCEPTED: 201, DUPLICATE: 200, CONFLICT: 409, REJECTED: 422}


class EventsController(LucController):
    path = "/v1/events"
    tags = ["ingest"]
    opt = INGEST

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
        operation_class=raw_json_body(EVENT_BODY, "One usage event (SPEC §2)"),
        responses={
            200: ResponseSpec(EventResult, description="Duplicate: same id and content"),
            409: ResponseSpec(EventResult, description="Conflict: same id, other content"),
            422: ResponseSpec(
                EventResult | ErrorBody,  # a union: documented as oneOf
                description="The event is rejected (with its reason), or the body is no event",
                generate_examples=False,
            ),
        },
    )
    async def ingest_one(
        self, request: Request[Any, Any, Any], luc: NamedDependency[Resources]
    ) -> Response[EventResult]:
        body = await request.body()
        item = parse_single(body, datetime.now(UTC), luc.settings.ingest)
        if isinstance(item, UsageEvent) and luc.group_writer is not None:
            # Shares a transaction with the single events other requests sent meanwhile.
            result = await luc.group_writer.submit(item)
        else:
            result = (await record_events(luc, [item])).results[0]
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
            "event never sinks the good ones beside it (should PostgreSQL refuse an event's "
            "values, the batch is committed in parts without it, and it alone is rejected)."
        ),
        status_code=200,
        operation_class=raw_json_body(BATCH_BODY, '{"events": [event, ...]}'),
    )
    async def ingest_batch(
        self, request: Request[Any, Any, Any], luc: NamedDependency[Resources]
    ) -> BatchResult:
        body = await request.body()
        parsed = parse_batch(body, datetime.now(UTC), luc.settings.ingest)
        outcome = await record_events(luc, parsed.items)
        return BatchResult(
            accepted=outcome.count(ACCEPTED),
            duplicates=outcome.count(DUPLICATE),
            conflicts=outcome.count(CONFLICT),
            rejected=outcome.count(REJECTED),
            results=[
                EventResult(id=r.id, status=r.status, reason=r.reason) for r in outcome.results
            ],
        )


async def record_events(luc: Resources, items: Sequence[UsageEvent | Rejection]) -> BatchOutcome:
    """Record a batch with the ingest metrics; the gateway's in-process sink uses it too."""
    started = time.perf_counter()
    if not any(isinstance(i, UsageEvent) for i in items):
        outcome = rejected_only(items)  # nothing to store: answers even with the database down
    elif not luc.settings.ingest.persist:  # a benchmark's reference (B2): nothing is stored
        catalog = luc.catalog_cache.loaded
        if catalog is None:
            catalog = await on_connection(luc.pool, luc.catalog_cache.get)
        outcome = price_only(catalog, items)
    else:
        # A batch (or a group of single events) that PostgreSQL refuses because of one
        # event's values is recorded without that event, which alone is rejected.
        outcome = await record_apart(
            lambda part: on_connection(
                luc.pool, lambda conn: record_batch(conn, luc.catalog_cache, part)
            ),
            items,
        )
    luc.metrics.ingest_seconds.observe(time.perf_counter() - started)
    luc.metrics.batch_events.observe(len(items))
    for status in (ACCEPTED, DUPLICATE, CONFLICT, REJECTED):
        if count := outcome.count(status):
            luc.metrics.events.labels(status).inc(count)
    if outcome.alerts and luc.dispatcher is not None:
        luc.dispatcher.wake()
    return outcome
