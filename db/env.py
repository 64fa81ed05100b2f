"""Alembic environment: plain SQL migrations run over asyncpg through SQLAlchemy.

``service.db.migrations.migrate_sync`` passes the URL (``config.attributes["dsn"]``), read
by asyncpg itself as the pool reads it. An advisory lock keeps two LUC processes starting
together from migrating at once. After the migrations, the ledger's month partitions of
this month and the next two are made, by the role that migrates (the schema's owner).
"""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
from alembic import context
from sqlalchemy import NullPool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from service.ledger.queries import ENSURE_MONTHS_AHEAD_FUNCTION, MONTHS_AHEAD
from service.locks import MIGRATION_LOCK_KEY


def _run(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
    try:
        context.configure(
            connection=connection, target_metadata=None, transaction_per_migration=True
        )
        with context.begin_transaction():
            context.run_migrations()
        if connection.execute(
            text("SELECT to_regprocedure(:function) IS NOT NULL"),
            {"function": ENSURE_MONTHS_AHEAD_FUNCTION},
        ).scalar():
            connection.execute(
                # This UTC month, whatever the server's time zone (ledger.queries).
                text("SELECT luc_ensure_ledger_months((now() AT TIME ZONE 'UTC')::date, :ahead)"),
                {"ahead": MONTHS_AHEAD},
            )
    except BaseException:
        # The transaction is aborted: unlocking in it would fail too ("current transaction
        # is aborted"), and that error would replace this one, the one that says what went
        # wrong. Closing the connection releases the session lock.
        with contextlib.suppress(Exception):
            connection.rollback()
        raise
    connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
    connection.commit()


async def _main() -> None:
    dsn = context.config.attributes.get("dsn")
    assert dsn, "service.db.migrations.migrate_sync sets the dsn attribute"
    engine = create_async_engine(
        "postgresql+asyncpg://", async_creator=lambda: asyncpg.connect(dsn), poolclass=NullPool
    )
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("LUC migrations run online only: use `luc migrate`.")
asyncio.run(_main())
