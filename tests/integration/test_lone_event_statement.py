"""A lone event is recorded by a statement of its own (``recording.queries.RECORD_ONE``),
whose rollups add its measures as they are instead of grouping one row. Whatever the
event (unpriced, with or without the provider's cost, priced for a customer's plan, a
replay), every rollup must still equal the ledger rebuilt in SQL by the tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service.recording import queries
from tests.support.events import MARKUP_PLAN, customer_on_plan, wire_event
from tests.support.ledger_truth import UNKNOWN_MODEL, make_events, rollup_differences
from tests.support.recording_spy import spy_recording_statements


@pytest.fixture
def statements(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The recording statement each group was written with, the long way or in one trip:
    "one" for a lone event's, "batch" for a group's."""
    lone = (queries.RECORD_ONE, *(s for (one, _), s in queries.ONE_TRIPS.items() if one))
    return spy_recording_statements(
        monkeypatch, lambda _, statement: "one" if statement in lone else "batch"
    )


async def test_lone_events_of_every_kind_roll_up_as_the_ledger_holds_them(
    client: AsyncTestClient[Any], db: asyncpg.Connection, statements: list[str]
) -> None:
    await customer_on_plan(client, "acme", MARKUP_PLAN)
    events = make_events(
        "lone", 40, ["job-a", "job-b", "job-c"], seed=11, start=datetime(2026, 11, 19, tzinfo=UTC)
    )
    events += [
        # Unpriced, alone on their job line and job: the rollups' first rows hold no cost.
        wire_event("unknown-1", job_id="job-u", model=UNKNOWN_MODEL),
        wire_event("unknown-2", job_id="job-u", model=UNKNOWN_MODEL, provider_cost_usd="0.002"),
        # A customer's: priced by its plan (the provider's cost plus 20 %, and per request).
        wire_event("acme-1", job_id="job-p", customer_id="acme", provider_cost_usd="0.01"),
        wire_event("acme-2", job_id="job-p", provider_cost_usd="0.02", status="error"),
        wire_event("acme-3", job_id="job-p", model=UNKNOWN_MODEL),
    ]
    for event in events:
        answer = await client.post("/v1/events", json=event)
        assert answer.status_code == 201, answer.text
    # Replays and a conflict, one at a time: nothing appended, nothing rolled up.
    for event in events[:3]:
        assert (await client.post("/v1/events", json=event)).json()["status"] == "duplicate"
    conflict = await client.post("/v1/events", json={**events[0], "output_tokens": 1})
    assert conflict.status_code == 409
    assert statements == ["one"] * (len(events) + 4)
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == len(events)
    assert await rollup_differences(db) == {}
    # Spot check by hand: acme-1's price is 0.01 × 1.2 + 0.001 = 0.013 USD.
    price = await db.fetchval("SELECT price_usd FROM ledger_entries WHERE event_id = 'acme-1'")
    assert str(price) == "0.013"
