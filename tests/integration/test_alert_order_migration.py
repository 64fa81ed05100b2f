"""Migration 0031 on an outbox with alerts waiting: the upgrade numbers them in the order
they were raised (then by threshold), so a budget's queue goes out as it would have been
raised; a reservation made before it has no key (only an admin key releases it). The
downgrade takes both columns away again.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

import asyncpg

from service.budgets.service import create_budget
from service.catalog.service import CatalogCache
from service.db.migrations import migrate_sync, schema_revision
from service.recording.service import record_batch
from tests.support.budgets import watched_global_budget
from tests.support.databases import connected
from tests.support.events import usage_event
from tests.support.migrations import downgrade_before, revision_before

REVISION = "0031_reservation_keys_alert_seq"


async def test_the_upgrade_numbers_waiting_alerts_in_the_order_they_were_raised(
    database_url: str, db: asyncpg.Connection
) -> None:
    # 1.0 and 0.5 of one batch (raised by today's code, which records into today's
    # rollups: the downgrade then takes the outbox back to the older schema with them),
    # 0.8 raised later (a limit lowered, say), inserted in no particular order.
    await create_budget(
        db,
        watched_global_budget(
            "0.0003", [Decimal("0.5"), Decimal("1")], "https://hooks.example.com/x", None
        ),
    )
    await record_batch(db, CatalogCache(), [usage_event("e1")])
    await downgrade_before(database_url, REVISION)
    async with connected(database_url) as conn:
        assert await schema_revision(conn) == revision_before(REVISION)
        budget_id = await conn.fetchval("SELECT id FROM budgets")
        later = await conn.fetchval(
            "INSERT INTO alerts (budget_id, period_start, threshold, spent_usd, limit_usd,"
            " scope, created_at) VALUES ($1, 'epoch', 0.8, 0.0003, 0.0003, 'global',"
            " now() + interval '1 minute') RETURNING id",
            budget_id,
        )
        await conn.execute(
            "INSERT INTO alert_outbox (alert_id, webhook_url) VALUES ($1, 'https://h.example/x')",
            later,
        )
    await asyncio.to_thread(migrate_sync, database_url)
    rows = await db.fetch(
        "SELECT a.threshold FROM alert_outbox AS o JOIN alerts AS a ON a.id = o.alert_id"
        " ORDER BY o.seq"
    )
    assert [r["threshold"] for r in rows] == [Decimal("0.5"), Decimal("1"), Decimal("0.8")]
    # Numbering goes on after them.
    next_seq = await db.fetchval("SELECT nextval('alert_outbox_seq')")
    assert next_seq == 4
    await downgrade_before(database_url, REVISION)
    async with connected(database_url) as conn:
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns"
            " WHERE (table_name, column_name) IN"
            " (('alert_outbox', 'seq'), ('budget_reservations', 'api_key_id'))"
        )
        assert columns == []
    await asyncio.to_thread(migrate_sync, database_url)
