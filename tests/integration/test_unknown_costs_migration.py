"""Migration 0030 on a database that already holds usage: every rollup row whose entries
know none of a cost (catalog, actual, price) gets NULL for it instead of the zero the older
rollups added; every other value stays, and the rollups equal the ledger before and after.

The database is filled through the service at head, taken back to the revision before
0030 (its downgrade writes the zeros back, as an older LUC left them) and upgraded again.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from service.db.migrations import migrate_sync, schema_revision
from tests.support.databases import connected
from tests.support.events import record_accepted, wire_event
from tests.support.ledger_truth import rollup_differences
from tests.support.migrations import downgrade_before, revision_before

D = Decimal
REVISION = "0030_unknown_costs_stay_unknown"
UNKNOWN = "vendor/not-in-the-catalog"
# gemini-3.0-flash: 1,000 × 0.10/M + 500 × 0.40/M = 0.0003
JOBS = "SELECT job_id, cost_usd, actual_cost_usd, price_usd FROM rollup_jobs ORDER BY job_id"


async def test_upgrading_turns_the_zeros_of_unknown_costs_into_nulls(
    client: Any, database_url: str
) -> None:
    await record_accepted(
        client,
        [
            wire_event("u1", job_id="job-u", agent="Oracle-U", model=UNKNOWN),
            wire_event(
                "r1", job_id="job-r", agent="Oracle-R", model=UNKNOWN, provider_cost_usd="0.0007"
            ),
            wire_event("m1", job_id="job-m", model=UNKNOWN),
            wire_event("m2", job_id="job-m"),
        ],
    )
    await downgrade_before(database_url, REVISION)
    async with connected(database_url) as conn:
        assert await schema_revision(conn) == revision_before(REVISION)
        assert [tuple(r) for r in await conn.fetch(JOBS)] == [
            ("job-m", D("0.0003"), D("0.0003"), D("0.0003")),
            ("job-r", D(0), D("0.0007"), D(0)),
            ("job-u", D(0), D(0), D(0)),
        ]
        assert await rollup_differences(conn) == {}  # as the older rollups summed

    await asyncio.to_thread(migrate_sync, database_url, REVISION)
    async with connected(database_url) as conn:
        assert [tuple(r) for r in await conn.fetch(JOBS)] == [
            ("job-m", D("0.0003"), D("0.0003"), D("0.0003")),
            ("job-r", None, D("0.0007"), None),
            ("job-u", None, None, None),
        ]
        agents = await conn.fetch(
            "SELECT agent, cost_usd, actual_cost_usd, price_usd FROM rollup_agent_days"
            " ORDER BY agent"
        )
        assert [tuple(r) for r in agents] == [
            ("ACHEEVY", D("0.0003"), D("0.0003"), D("0.0003")),
            ("Oracle-R", None, D("0.0007"), None),
            ("Oracle-U", None, None, None),
        ]
        assert await rollup_differences(conn) == {}

    # The service goes on: a priced call of job-u makes its figures known.
    await record_accepted(client, [wire_event("u2", job_id="job-u", agent="Oracle-U")])
    async with connected(database_url) as conn:
        row = await conn.fetchrow(JOBS.replace("ORDER BY job_id", "WHERE job_id = 'job-u'"))
        assert tuple(row) == ("job-u", D("0.0003"), D("0.0003"), D("0.0003"))
        assert await rollup_differences(conn) == {}
