"""Databases that exist for one test, one module or one benchmark run, on a server the
caller may create databases on (``admin_url``)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg

from service.db import with_database


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
