"""Alembic environment: plain SQL migrations run over asyncpg through SQLAlchemy.

The URL comes from the ``sqlalchemy.url`` option that ``service.db.run_migrations`` sets;
an advisory lock keeps two LUC processes starting together from migrating at once.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from service.locks import MIGRATION_LOCK_KEY


def _run(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    try:
        context.configure(
            connection=connection, target_metadata=None, transaction_per_migration=True
        )
        with context.begin_transaction():
            context.run_migrations()
    finally:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
        connection.commit()


async def _main() -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    assert url, "service.db.run_migrations sets sqlalchemy.url"
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("LUC migrations run online only: use `luc migrate`.")
asyncio.run(_main())
