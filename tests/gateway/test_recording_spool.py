"""Usage born in LUC's own gateway while PostgreSQL is away waits in a local spool and
reaches the ledger once PostgreSQL is back: nothing lost, nothing twice."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from service.catalog.service import CatalogCache
from service.client import Spool
from service.db import create_pool
from service.errors import DatabaseUnavailableError
from service.gateway.local import RecordingSink
from service.ingest.models import Rejection, UsageEvent, UsageEventIn
from service.record.service import BatchOutcome, record_batch
from service.settings import load_settings


def usage(event_id: str) -> UsageEventIn:
    return UsageEventIn(
        id=event_id,
        occurred_at="2026-11-20T10:00:00Z",
        job_id="job-spool",
        agent="ORACLE",
        provider="openrouter",
        model="google/gemini-3.0-flash",
        input_tokens=1000,
        output_tokens=500,
        provider_cost_usd="0.0003",
    )


async def test_usage_recorded_during_an_outage_is_spooled_then_replayed_once(
    database_url: str, db: asyncpg.Connection, tmp_path: Path
) -> None:
    settings = load_settings({"LUC_DATABASE_URL": database_url})
    pool = await create_pool(database_url, settings.database)
    cache = CatalogCache()
    database_down = True

    async def record(items: Sequence[UsageEvent | Rejection]) -> BatchOutcome:
        # The real ledger write, behind a switch standing for PostgreSQL being away.
        if database_down:
            raise DatabaseUnavailableError("PostgreSQL is unavailable: connection refused")
        async with pool.acquire() as conn:
            return await record_batch(conn, cache, items)

    spool = Spool(tmp_path / "spool.sqlite")
    sink = RecordingSink(pool, cache, settings.ingest, record=record, spool=spool)
    try:
        for i in range(3):
            await sink.emit(usage(f"gen-{i}"))
        await sink.emit(usage("gen-0"))  # the same call reported twice
        assert await spool.count() == 3  # an id already waiting is not queued twice
        assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 0

        with pytest.raises(DatabaseUnavailableError):
            await sink.replay_spooled()  # still away: everything stays spooled
        assert await spool.count() == 3

        database_down = False
        assert await sink.replay_spooled() == 3
        assert await spool.count() == 0
        await sink.emit(usage("gen-1"))  # a late repeat goes straight to the ledger
        # 3 events × (1000 × $0.10 + 500 × $0.40) / 1M = 3 × $0.0003
        assert await db.fetchval("SELECT cost_usd FROM rollup_jobs") == Decimal("0.0009")
        assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 3
    finally:
        await spool.close()
        await pool.close()
