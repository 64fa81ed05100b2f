"""A connection goes back to LUC's pool without asyncpg's reset query (a round trip on
every release, for session state LUC never leaves behind), yet never inside a
transaction: one left open is rolled back first; and it keeps the write path's statement
prepared from one group of events to the next."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import pytest

from service.catalog.service import CatalogCache
from service.db import create_pool
from service.ledger.service import INLINE_LIMIT
from service.recording.models import ACCEPTED
from service.recording.service import record_batch
from service.settings import DatabaseSettings
from tests.support.events import usage_event

pytestmark = pytest.mark.asyncio


async def test_a_released_connection_is_not_reset_but_never_left_in_a_transaction(
    database_url: str,
) -> None:
    pool = await create_pool(database_url, DatabaseSettings(pool_min_size=1, pool_max_size=1))
    sent: list[str] = []

    def logged(query: asyncpg.connection.LoggedQuery) -> None:
        sent.append(query.query)

    try:
        async with pool.acquire() as conn:
            conn.add_query_logger(logged)
            assert await conn.fetchval("SELECT 1") == 1
        async with pool.acquire() as conn:  # the same connection: the pool holds one
            await conn.execute("BEGIN")  # left open, as a bug or a cancellation might
        async with pool.acquire() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SHOW timezone") == "UTC"  # its start-up settings
        assert sent == ["SELECT 1", "BEGIN", "ROLLBACK", "SHOW timezone"]
    finally:
        await pool.close()


@pytest.mark.parametrize(
    ("events", "source"),
    [(1, "json_to_recordset"), (INLINE_LIMIT + 1, "luc_staged_charges")],
    ids=["inline", "staged"],
)
async def test_the_write_path_statement_stays_prepared_on_a_pooled_connection(
    database_url: str, events: int, source: str
) -> None:
    """The statement that stores, appends and rolls up a group is prepared once per
    connection and reused: an uncached one is parsed and planned again for every group
    (asyncpg caches no statement longer than its limit: 15 KiB by default, and the
    inline one is longer, the staged one just shorter)."""
    pool = await create_pool(database_url, DatabaseSettings(pool_min_size=1, pool_max_size=1))
    try:
        async with pool.acquire() as conn:
            for n in range(3):
                group = [
                    usage_event(f"cached-{n}-{i}", occurred_at=datetime.now(UTC), job_id="job-c")
                    for i in range(events)
                ]
                outcome = await record_batch(conn, CatalogCache(), group)
                assert [r.status for r in outcome.results] == [ACCEPTED] * events
            statements = await conn.fetch("SELECT statement FROM pg_prepared_statements")
        recording = [s["statement"] for s in statements if "appended AS (" in s["statement"]]
        assert len(recording) == 1, recording  # the same one, kept for the next group
        assert source in recording[0]
    finally:
        await pool.close()
