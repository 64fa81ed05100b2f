"""Every session LUC opens speaks UTC, whatever time zone the database is set to: a day, a
month, a budget period and a ledger partition are UTC ones, and some statements read
``now()`` as a date."""

from __future__ import annotations

import asyncpg
import pytest

from service.db import connect, create_pool
from service.settings import DatabaseSettings

pytestmark = pytest.mark.asyncio


async def test_pooled_and_lone_connections_are_in_utc_on_a_database_set_elsewhere(
    database_url: str, db: asyncpg.Connection
) -> None:
    name = await db.fetchval("SELECT current_database()")
    # Kiritimati is UTC+14: in a UTC month's last hours its date is already next month's.
    await db.execute(f"ALTER DATABASE \"{name}\" SET timezone TO 'Pacific/Kiritimati'")
    lone = await connect(database_url)  # the CLI's and the migrations' way in
    pool = await create_pool(database_url, DatabaseSettings(pool_min_size=1, pool_max_size=1))
    try:
        assert await lone.fetchval("SHOW timezone") == "UTC"
        assert await pool.fetchval("SHOW timezone") == "UTC"
        # A tool's session is told apart from a server's (which tests and operators count).
        assert await lone.fetchval("SHOW application_name") == "luc-tool"
        assert await pool.fetchval("SHOW application_name") == "luc"
        # A session without LUC's settings would have taken the database's.
        plain = await asyncpg.connect(database_url)
        try:
            assert await plain.fetchval("SHOW timezone") == "Pacific/Kiritimati"
        finally:
            await plain.close()
    finally:
        await lone.close()
        await pool.close()
