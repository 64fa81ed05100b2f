"""A statement that runs into ``LUC_DB_STATEMENT_TIMEOUT_MS`` (here: ingest waiting on a row
that another transaction holds locked) is PostgreSQL unable to do the work now, as in an
outage: 503 with Retry-After, the client's cue to send the same events again, and nothing
half-stored. Never a 500 "internal error", which tells a client nothing about retrying.
"""

from __future__ import annotations

import asyncpg
from litestar.testing import AsyncTestClient

from service.app import create_app
from tests.support.events import wire_event
from tests.support.ledger_truth import assert_rollups_equal_ledger
from tests.support.settings import settings_for

JOB = "job-locked"


async def test_ingest_held_past_the_statement_timeout_answers_503_and_stores_nothing(
    database_url: str, db: asyncpg.Connection
) -> None:
    app = create_app(settings_for(database_url, LUC_DB_STATEMENT_TIMEOUT_MS="300"))
    async with AsyncTestClient(app=app, timeout=30) as client:
        first = await client.post("/v1/events", json=wire_event("st-0", job_id=JOB))
        assert first.status_code == 201, first.text

        holder = await asyncpg.connect(database_url)
        try:
            async with holder.transaction():
                # The job's rollup row, locked as a long report or a stuck session would.
                await holder.execute("SELECT 1 FROM rollup_jobs WHERE job_id = $1 FOR UPDATE", JOB)
                batch = await client.post(
                    "/v1/events/batch",
                    json={"events": [wire_event("st-1", job_id=JOB), wire_event("st-2")]},
                )
                single = await client.post("/v1/events", json=wire_event("st-3", job_id=JOB))
        finally:
            await holder.close()

        for answer in (batch, single):
            assert answer.status_code == 503, answer.text
            assert answer.headers["retry-after"] == "5"
            assert "retry" in answer.json()["detail"]
        stored = await db.fetch("SELECT event_id FROM event_keys ORDER BY event_id")
        assert [r["event_id"] for r in stored] == ["st-0"]

        # The same events again, once the lock is gone: each recorded once.
        again = await client.post(
            "/v1/events/batch",
            json={"events": [wire_event(f"st-{n}", job_id=JOB) for n in (1, 3)]},
        )
        assert again.json()["accepted"] == 2, again.text
    assert await db.fetchval("SELECT events FROM rollup_jobs WHERE job_id = $1", JOB) == 3
    await assert_rollups_equal_ledger(db)
