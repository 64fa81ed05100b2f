"""The one usage event builder of tests and bench/: SPEC §2's wire form, with defaults
whose cost is worked out by hand, and the same call as LUC's own types.

By default an event is a call of 1,000 input and 500 output tokens of
google/gemini-3.0-flash (0.10 / 0.40 USD per 1M tokens) at 2026-11-20 10:00 UTC:
1000 × 0.10/M + 500 × 0.40/M = 0.0001 + 0.0002 = 0.0003 USD. A test names only what its
events do differently (``functools.partial`` over these, where a whole module differs the
same way).
"""

from __future__ import annotations

import random
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


def wire_event(event_id: str, /, **fields: Any) -> dict[str, Any]:
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


MANY_CALLS_MODELS = (
    "anthropic/claude-sonnet-4.5",
    "gemini-3.0-flash",
    "anthropic/claude-haiku-4.5",
    "meta-llama/llama-3.3-70b-instruct",
    "acme/never-priced",
)


def many_calls(
    count: int, models: tuple[str, ...] = MANY_CALLS_MODELS, seed: int = 18
) -> list[dict[str, Any]]:
    """``count`` calls over October 2026 (at any second, some on a microsecond) by four
    agents (in turn) of 37 jobs, on ``models`` (an unknown one stays unpriced), each third
    with the provider's cost to 17 decimals, some with cache reads and writes and
    reasoning: many rows for reads whose figures are compared, not worked out by hand."""
    rng = random.Random(seed)
    agents = ("ACHEEVY", "Boomer_Ang", "ORACLE", "ByteRover")
    events = []
    for i in range(count):
        inp, out = rng.randrange(1, 300_000), rng.randrange(0, 20_000)
        cached = rng.choice((0, inp // 3))
        fraction = rng.choice(("", f".{rng.randrange(1_000_000):06d}"))
        more: dict[str, Any] = {
            "cached_input_tokens": cached,
            "cache_write_tokens": rng.choice((0, (inp - cached) // 4)),
            "reasoning_tokens": rng.choice((0, out // 2)),
        }
        if i % 3 == 0:
            more["provider_cost_usd"] = f"0.{rng.randrange(10**17):017d}"
        events.append(
            wire_event(
                f"m{i}",
                occurred_at=f"2026-10-{rng.randrange(1, 32):02d}T{rng.randrange(24):02d}:"
                f"{rng.randrange(60):02d}:{rng.randrange(60):02d}{fraction}Z",
                job_id=f"job-{i % 37}",
                agent=agents[i % 4],
                provider=rng.choice(("openrouter", "vertex")),
                model=rng.choice(models),
                input_tokens=inp,
                output_tokens=out,
                **more,
            )
        )
    return events


MARKUP_PLAN: dict[str, Any] = {
    "id": "markup",
    "name": "Markup",
    "effective_from": "2026-01-01T00:00:00Z",
    "basis": "actual",
    "markup": "0.2",
    "per_request_usd": "0.001",
}
"""A plan pricing an event at its provider's cost × 1.2 + 0.001 USD (0.01 → 0.013)."""


async def customer_on_plan(
    client: AsyncTestClient[Any] | httpx.AsyncClient, customer_id: str, plan: dict[str, Any]
) -> None:
    """``POST /v1/plans`` with ``plan`` (its first version), then customer ``customer_id`` on
    it; both must be created."""
    created = await client.post("/v1/plans", json=plan)
    assert created.status_code == 201, created.text
    customer = {"id": customer_id, "name": customer_id.title(), "plan_id": plan["id"]}
    created = await client.post("/v1/customers", json=customer)
    assert created.status_code == 201, created.text
