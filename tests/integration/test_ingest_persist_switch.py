"""``LUC_INGEST_PERSIST=0``, the benchmarks' B2 reference: ingest validates, prices and
answers as usual, and stores nothing."""

from __future__ import annotations

from functools import partial

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.errors import SettingsError
from service.settings import load_settings
from tests.support.events import wire_event
from tests.support.settings import settings_for

event = partial(
    wire_event,
    occurred_at="2026-10-10T09:00:00Z",
    job_id="job-dry",
    model="gemini-3.0-flash",
    output_tokens=100,
)


async def test_with_persistence_off_events_are_answered_but_nothing_is_stored(
    database_url: str, db: asyncpg.Connection
) -> None:
    app = create_app(settings_for(database_url, LUC_INGEST_PERSIST="0"))
    async with AsyncTestClient(app=app) as client:
        batch = await client.post(
            "/v1/events/batch",
            json={
                "events": [
                    event("d1"),
                    event("d1"),  # a repeat inside the batch is still a duplicate
                    event("d2", model="acme/unknown"),  # priced as unpriced, not refused
                    event("d3", cached_input_tokens=5000),  # invalid: more cached than input
                ]
            },
        )
        assert batch.status_code == 200, batch.text
        answer = batch.json()
        assert [r["status"] for r in answer["results"]] == [
            "accepted",
            "duplicate",
            "accepted",
            "rejected",
        ]
        single = await client.post("/v1/events", json=event("d1"))
        assert single.status_code == 201, single.text  # nothing stored: not a duplicate

    for table in ("event_keys", "ledger_entries", "rollup_jobs", "rollup_agent_days"):
        assert await db.fetchval(f"SELECT count(*) FROM {table}") == 0, table


def test_the_persistence_switch_takes_only_0_or_1() -> None:
    assert load_settings({"LUC_INGEST_PERSIST": "0"}).ingest.persist is False
    assert load_settings({}).ingest.persist is True
    with pytest.raises(SettingsError, match="LUC_INGEST_PERSIST"):
        load_settings({"LUC_INGEST_PERSIST": "no"})
