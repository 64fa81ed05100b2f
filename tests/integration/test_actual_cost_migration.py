"""Migration 0012 on a database that already holds usage: every ledger entry gets its actual
cost (the provider's reported cost where present, else the catalog's) and every rollup row
the sum of its entries', with nothing else touched.

The database is filled through the service at head (charges with and without a reported
cost, unpriced events with and without one, a re-rating), then taken back to the revision
before 0012 (its downgrade drops exactly the columns it adds: the ledger as an older LUC
left it) and upgraded again.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import asyncpg

from service.db.migrations import migrate_sync, schema_revision
from tests.support.databases import connected
from tests.support.events import record_accepted, wire_event
from tests.support.ledger_truth import rollup_differences
from tests.support.migrations import downgrade_before, revision_before

D = Decimal
REVISION = "0012_actual_cost"
SONNET = "anthropic/claude-sonnet-4.5"  # AIMS: 3 in / 15 out per 1M
GPT = "openai/gpt-5.1"  # AIMS: 3 in / 12 out per 1M (cache prices play no part here)
UNKNOWN = "vendor/not-in-the-catalog"


def event(event_id: str, model: str, tokens: tuple[int, int], **more: Any) -> dict[str, Any]:
    return wire_event(
        event_id,
        occurred_at="2026-10-05T10:00:00Z",
        job_id="job-old",
        agent="ORACLE",
        model=model,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        **more,
    )


# Sonnet 100,000 × 3 + 10,000 × 15 = 450,000 per 1M; GPT 10,000 × 3 + 1,000 × 12 = 42,000.
OLD_EVENTS = [
    event("o1", SONNET, (100_000, 10_000), provider_cost_usd="0.4401"),
    event("o2", GPT, (10_000, 1_000), provider="vertex"),
    event("o3", UNKNOWN, (1_000, 100), provider_cost_usd="0.000777"),
    event("o4", UNKNOWN, (2_000, 100), provider="vertex"),
]
ACTUAL = {"o1": D("0.4401"), "o2": D("0.042"), "o3": D("0.000777"), "o4": None}

ENTRIES = """
SELECT event_id, kind, cost_usd, provider_cost_usd, actual_cost_usd
FROM ledger_entries ORDER BY id
"""
ROLLUP_ACTUALS = {
    table: f"SELECT actual_cost_usd FROM {table} ORDER BY 1 NULLS FIRST"
    for table in (
        "rollup_jobs",
        "rollup_job_lines",
        "rollup_usage",
        "rollup_agent_days",
        "rollup_model_days",
    )
}


async def snapshot(conn: asyncpg.Connection) -> tuple[list[Any], dict[str, list[Any]]]:
    entries = [tuple(r) for r in await conn.fetch(ENTRIES)]
    rollups = {t: [r[0] for r in await conn.fetch(sql)] for t, sql in ROLLUP_ACTUALS.items()}
    return entries, rollups


async def test_upgrading_a_ledger_with_usage_fills_every_actual_cost_from_its_entries(
    client: Any, database_url: str
) -> None:
    await record_accepted(client, OLD_EVENTS)
    # A correction of GPT's output price (12 → 11), re-rated: o2 gets a reversal and a new
    # booking at 10,000 × 3 + 1,000 × 11 = 41,000 per 1M.
    response = await client.post(
        "/v1/catalog/versions",
        json={
            "effective_from": "2026-10-01T00:00:00Z",
            "parent": 1,
            "models": [
                {"id": GPT, "name": "GPT-5.1", "tier": "standard", "input": "3", "output": "11"}
            ],
        },
    )
    assert response.status_code == 201, response.text
    rerate = await client.post("/v1/catalog/rerate", json={"since": "2026-10-01T00:00:00Z"})
    assert rerate.json()["events_changed"] == 1, rerate.text
    async with connected(database_url) as conn:
        at_head = await snapshot(conn)

    # Alembic runs its own event loop (db/env.py): in a thread, as ``migrate`` does.
    await downgrade_before(database_url, REVISION)
    async with connected(database_url) as conn:
        assert await schema_revision(conn) == revision_before(REVISION)
        columns = await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'actual_cost_usd'"
        )
        assert columns == 0  # the ledger and rollups as they were before 0012
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 6

    # Up to the head: the later migrations (0013's rollup) are there as before, so every
    # rollup can be checked against the ledger.
    await asyncio.to_thread(migrate_sync, database_url)
    async with connected(database_url) as conn:
        entries, rollups = await snapshot(conn)
        assert (entries, rollups) == at_head
        assert [(e[0], e[1], e[4]) for e in entries] == [
            ("o1", "charge", ACTUAL["o1"]),
            ("o2", "charge", D("0.042")),
            ("o3", "charge", ACTUAL["o3"]),
            ("o4", "charge", None),
            ("o2", "adjustment", D("-0.042")),  # the reversal takes back what was booked
            ("o2", "adjustment", D("0.041")),
        ]
        # one job: 0.4401 + 0.041 + 0.000777 (o4: none known)
        assert rollups["rollup_jobs"] == [D("0.481877")]
        # the unpriced vertex line (o4) knows no actual cost; the old version's GPT line
        # nets to zero
        assert rollups["rollup_job_lines"] == [None, D(0), D("0.000777"), D("0.041"), D("0.4401")]
    # The later revisions (reconciliation's rollup, prices) on top: every rollup, those
    # included, equals its ledger entries.
    await asyncio.to_thread(migrate_sync, database_url, "head")
    async with connected(database_url) as conn:
        assert await rollup_differences(conn) == {}
