"""A connection goes back to LUC's pool without asyncpg's reset query (a round trip on
every release, for session state LUC never leaves behind), yet never inside a
transaction: one left open is rolled back first."""

from __future__ import annotations

import asyncpg
import pytest

from service.db import create_pool
from service.settings import DatabaseSettings

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
