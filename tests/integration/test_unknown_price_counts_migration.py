"""Migration 0030 (unknown price counts) on a ledger with usage: the downgrade drops the
counts, and the upgrade rebuilds them from the ledger, so a job of events no one priced
says price_usd null again (not "0"), and every rollup equals its ledger, the counts too.
"""

from __future__ import annotations

import asyncio
from typing import Any

from service.db.migrations import migrate_sync, schema_revision
from tests.support.databases import connected
from tests.support.events import record_accepted, wire_event
from tests.support.ledger_truth import assert_rollups_equal_ledger
from tests.support.migrations import downgrade_before, revision_before

REVISION = "0030_unknown_price_counts"
UNKNOWN = "mistral-large"  # no catalog version prices it


async def test_the_upgrade_counts_the_events_of_unknown_price_from_the_ledger(
    client: Any, database_url: str
) -> None:
    await record_accepted(
        client,
        [
            wire_event("u1", job_id="job-u", model=UNKNOWN),
            wire_event("u2", job_id="job-u", model=UNKNOWN, provider_cost_usd="0.5"),
            wire_event("p1", job_id="job-p"),
        ],
    )
    before = (await client.get("/v1/jobs/job-u")).json()
    assert (before["price_usd"], before["actual_cost_usd"]) == (None, "0.5")
    await downgrade_before(database_url, REVISION)
    async with connected(database_url) as conn:
        assert await schema_revision(conn) == revision_before(REVISION)
        await assert_rollups_equal_ledger(conn)  # the rule of the older schema
    await asyncio.to_thread(migrate_sync, database_url)
    async with connected(database_url) as conn:
        await assert_rollups_equal_ledger(conn)
        counts = await conn.fetchrow(
            "SELECT unknown_price_events, unknown_actual_events FROM rollup_jobs"
            " WHERE job_id = 'job-u'"
        )
        assert counts is not None
        assert tuple(counts) == (2, 1)
    assert (await client.get("/v1/jobs/job-u")).json() == before
