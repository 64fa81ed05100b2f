"""The one usage event builder of tests and bench/: SPEC §2's wire form, with defaults
whose cost is worked out by hand, and the same call as LUC's own types.

By default an event is a call of 1,000 input and 500 output tokens of
google/gemini-3.0-flash (0.10 / 0.40 USD per 1M tokens) at 2026-11-20 10:00 UTC:
1000 × 0.10/M + 500 × 0.40/M = 0.0001 + 0.0002 = 0.0003 USD. A test names only what its
events do differently (``functools.partial`` over these, where a whole module differs the
same way).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from litestar.testing import AsyncTestClient

from service.ingest.models import UsageEvent, UsageEventIn

CALL: dict[str, Any] = {
    "occurred_at": "2026-11-20T10:00:00Z",
    "job_id": "job-1",
    "agent": "ACHEEVY",
    "provider": "openrouter",
    "model": "google/gemini-3.0-flash",
    "input_tokens": 1000,
    "output_tokens": 500,
}
"""The fields every event has on the wire: the ones SPEC §2 requires."""
WHEN = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
"""``CALL``'s ``occurred_at`` as an instant."""


def wire_event(event_id: str, **fields: Any) -> dict[str, Any]:
    """The JSON object a gateway sends: ``CALL`` with ``fields`` over it. A field given as
    ``...`` is left out (to send an event without a field SPEC §2 requires)."""
    body = {"id": event_id, **CALL, **fields}
    return {name: value for name, value in body.items() if value is not ...}


def usage_event_in(event_id: str, **fields: Any) -> UsageEventIn:
    """``wire_event`` decoded: what an emitter sends and a spool keeps."""
    return UsageEventIn(**wire_event(event_id, **fields))


def usage_event(event_id: str, **fields: Any) -> UsageEvent:
    """The same call once validated, as ``record_batch`` takes it: ``occurred_at`` an
    instant (``WHEN`` unless given), every token class it does not name 0, no provider
    cost, status ok, no attributes."""
    values: dict[str, Any] = {
        **CALL,
        "occurred_at": WHEN,
        "cached_input_tokens": 0,
        "cache_write_tokens": 0,
        "reasoning_tokens": 0,
        "provider_cost_usd": None,
        "status": "ok",
        "attributes": None,
        **fields,
    }
    return UsageEvent(id=event_id, **values)


async def record_accepted(
    client: AsyncTestClient[Any] | httpx.AsyncClient, events: list[dict[str, Any]]
) -> None:
    """``POST /v1/events/batch`` with ``events``; every one of them must be accepted."""
    response = await client.post("/v1/events/batch", json={"events": events})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == len(events), response.text
