"""Databases that exist for one test, one module or one benchmark run, on a server the
caller may create databases on (``admin_url``); a connection for one block; a database
made ready as the service expects it (migrated, the AIMS catalog loaded)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg

from service.catalog.service import seed_catalog
from service.db import connect
from service.db.migrations import migrate_sync
from service.db.urls import with_database


async def admin_sql(admin_url: str, sql: str) -> None:
    """Run one statement on its own connection: CREATE and DROP DATABASE cannot run inside
    a transaction, nor on a connection to the database they drop."""
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _create(name: str, template: str | None) -> str:
    return f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")


def _drop(name: str) -> str:
    return f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'


@contextlib.asynccontextmanager
async def new_database(
    admin_url: str, prefix: str, template: str | None = None
) -> AsyncIterator[str]:
    """A database named ``<prefix>_<random>`` (a copy of ``template``, or empty) for the
    block; its URL. Dropped afterwards, whoever is still connected."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    await admin_sql(admin_url, _create(name, template))
    try:
        yield with_database(admin_url, name)
    finally:
        await admin_sql(admin_url, _drop(name))


@contextlib.contextmanager
def new_database_sync(admin_url: str, prefix: str, template: str | None = None) -> Iterator[str]:
    """``new_database`` outside an event loop (a synchronous fixture, a benchmark)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    asyncio.run(admin_sql(admin_url, _create(name, template)))
    try:
        yield with_database(admin_url, name)
    finally:
        asyncio.run(admin_sql(admin_url, _drop(name)))


@contextlib.asynccontextmanager
async def connected(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to ``database_url`` for the block, as the service opens one."""
    conn = await connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


async def prepare_database(database_url: str) -> None:
    """Migrate to head and load the AIMS catalog, as ``luc serve`` does on start-up."""
    await asyncio.to_thread(migrate_sync, database_url)
    async with connected(database_url) as conn:
        await seed_catalog(conn)
