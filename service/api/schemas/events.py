"""Ingest: the bodies ``POST /v1/events`` and ``/v1/events/batch`` take, and their answers.

The handlers read their bodies raw (so one bad event is rejected alone): the bodies they
expect are documented here instead of derived from a ``data`` parameter.
"""

from __future__ import annotations

import msgspec
from litestar.openapi.spec import OpenAPIType, Schema

from service.api.raw_body import json_schema_of
from service.ingest.models import UsageEventIn

EVENT_BODY = json_schema_of(UsageEventIn, occurred_at={"type": "string", "format": "date-time"})
BATCH_BODY = Schema(
    type=OpenAPIType.OBJECT,
    properties={
        "events": Schema(
            type=OpenAPIType.ARRAY,
            items=EVENT_BODY,
            min_items=1,
            description="Up to LUC_MAX_BATCH_EVENTS (default 5,000) events, each judged alone",
        )
    },
    required=["events"],
    additional_properties=False,
)


class EventResult(msgspec.Struct, omit_defaults=True):
    id: str | None
    status: str
    reason: str | None = None
    warning: str | None = None
    """Of an accepted event: what it asked for and did not get (its reservation_id settled
    no reservation, and why); the event is recorded all the same."""


class BatchResult(msgspec.Struct):
    accepted: int
    duplicates: int
    conflicts: int
    rejected: int
    results: list[EventResult]
