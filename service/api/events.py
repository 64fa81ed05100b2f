"""``POST /v1/events`` and ``POST /v1/events/batch``: decode, then ``service.recording``
records (single events through the group commit); answers come after commit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec

from service.api.deps import LucController, Resources
from service.api.raw_body import raw_json_body
from service.api.request import OWN_BODY, reservation_owner
from service.api.schemas.common import ErrorBody
from service.api.schemas.events import BATCH_BODY, EVENT_BODY, BatchResult, EventResult
from service.auth.guard import INGEST
from service.ingest.models import Rejection, UsageEvent
from service.ingest.validate import parse_batch, parse_single
from service.recording.models import ACCEPTED, CONFLICT, DUPLICATE, REJECTED

SINGLE_STATUS = {ACCEPTED: 201, DUPLICATE: 200, CONFLICT: 409, REJECTED: 422}


class EventsController(LucController):
    path = "/v1/events"
    tags = ["ingest"]
    opt = {**INGEST, OWN_BODY: True}  # read raw, decoded by ingest

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
        [item] = _keyed([parse_single(body, datetime.now(UTC), luc.settings.ingest)], request)
        if isinstance(item, UsageEvent) and luc.group_writer is not None:
            # Shares a transaction with the single events other requests sent meanwhile.
            result = await luc.group_writer.submit(item)
        else:
            result = (await luc.recorder.record_events([item])).results[0]
        return Response(
            EventResult(
                id=result.id, status=result.status, reason=result.reason, warning=result.warning
            ),
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
        outcome = await luc.recorder.record_events(_keyed(parsed.items, request))
        return BatchResult(
            accepted=outcome.count(ACCEPTED),
            duplicates=outcome.count(DUPLICATE),
            conflicts=outcome.count(CONFLICT),
            rejected=outcome.count(REJECTED),
            results=[
                EventResult(id=r.id, status=r.status, reason=r.reason, warning=r.warning)
                for r in outcome.results
            ],
        )


def _keyed(
    items: Sequence[UsageEvent | Rejection], request: Request[Any, Any, Any]
) -> list[UsageEvent | Rejection]:
    """The events, each told the key that sent it: its reservation_id settles only a
    reservation that key made (an admin key's, or any with authentication off, settles
    any). Another ingest key naming it must not free the headroom it holds."""
    owner = reservation_owner(request)
    if owner is None:
        return list(items)
    return [
        replace(i, reservation_key=owner) if isinstance(i, UsageEvent) and i.reservation_id else i
        for i in items
    ]
