"""Migration 0032 (the margin over known prices and costs) on a ledger with usage: the
downgrade drops the columns, and the upgrade sums them from the ledger, so a job with an
event of unknown price and reported cost says the margin of its other events again, and
every rollup equals its ledger, the margin too.

Gemini 3.0 Flash at 0.10 in / 0.40 out per 1M: the default call (1,000 in, 500 out)
costs 0.0003, its price (no plan) too, margin 0.
"""

from __future__ import annotations

import asyncio
from typing import Any

from service.db.migrations import migrate_sync, schema_revision
from tests.support.databases import connected
from tests.support.events import record_accepted, wire_event
from tests.support.ledger_truth import assert_rollups_equal_ledger
from tests.support.migrations import downgrade_before, revision_before

REVISION = "0032_margin_over_known"
UNKNOWN = "mistral-large"  # no catalog version prices it


async def test_the_upgrade_sums_the_margin_of_known_events_from_the_ledger(
    client: Any, database_url: str
) -> None:
    await record_accepted(
        client,
        [
            wire_event("k1", job_id="job-k"),
            wire_event("k2", job_id="job-k", model=UNKNOWN, provider_cost_usd="0.5"),
            wire_event("u1", job_id="job-u", model=UNKNOWN),
        ],
    )
    before = (await client.get("/v1/jobs/job-k")).json()
    assert (before["price_usd"], before["actual_cost_usd"], before["margin_usd"]) == (
        "0.0003",
        "0.5003",
        "0",
    )
    await downgrade_before(database_url, REVISION)
    async with connected(database_url) as conn:
        assert await schema_revision(conn) == revision_before(REVISION)
        await assert_rollups_equal_ledger(conn)  # the rule of the older schema
    await asyncio.to_thread(migrate_sync, database_url)
    async with connected(database_url) as conn:
        await assert_rollups_equal_ledger(conn)
        rows = await conn.fetch(
            "SELECT job_id, margin_usd, unknown_margin_events FROM rollup_jobs ORDER BY job_id"
        )
        assert [tuple(r) for r in rows] == [("job-k", 0, 1), ("job-u", 0, 1)]
    assert (await client.get("/v1/jobs/job-k")).json() == before
    assert (await client.get("/v1/jobs/job-u")).json()["margin_usd"] is None
