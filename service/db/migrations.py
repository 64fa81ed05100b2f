"""Migrations: Alembic revisions in ``db/`` (plain SQL through ``run_sql``; shipped inside
the package by a wheel: ``service.shipped``), run at start-up and by ``luc migrate``; the
schema's revision checked against this LUC's newest.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import asyncpg

from service.db import Connection, is_unavailable, missing_privilege
from service.db.urls import dsn
from service.errors import DatabaseSetupError
from service.shipped import migrations_dir


def _alembic_config(url: str) -> Any:
    from alembic.config import Config

    # Built here, not read from alembic.ini: an installed LUC has no file beside it.
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("path_separator", "os")
    # db/env.py connects with asyncpg itself, with the URL exactly as the pool reads it
    # (TLS parameters included): SQLAlchemy would pass ``sslmode`` to asyncpg.connect()
    # as a keyword argument it does not take.
    config.attributes["dsn"] = dsn(url)
    return config


def _postgres_error(exc: BaseException) -> asyncpg.PostgresError | None:
    """The PostgreSQL error behind ``exc`` (SQLAlchemy and Alembic wrap it)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, asyncpg.PostgresError):
            return current
        orig = getattr(current, "orig", None)
        current = (
            orig if isinstance(orig, BaseException) else (current.__cause__ or current.__context__)
        )
    return None


def migration_error(exc: BaseException, url: str) -> BaseException:
    """What to raise for a failed migration: the first PostgreSQL error, with the
    privilege it lacks named; an outage or anything else unchanged."""
    if is_unavailable(exc):
        return exc
    error = _postgres_error(exc)
    if error is None:
        return exc
    user = urlsplit(url).username or "the connecting role"
    text = f"{type(error).__name__}: {error}"
    if isinstance(error, asyncpg.InsufficientPrivilegeError):
        privilege = missing_privilege(str(error))
        needs = f" (it needs {privilege})" if privilege else ""
        return DatabaseSetupError(
            f"migrations failed: {user} may not change LUC's schema{needs}: {text}. "
            "Run `luc migrate` as the schema's owner (LUC_DATABASE_URL of the owner role); "
            "the service's own role needs no more than the grants in README, Operating LUC"
        )
    return DatabaseSetupError(f"migrations failed: {text}")


def migrate_sync(url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision``, then make the ledger's coming month partitions.
    Blocking; safe to call from several processes."""
    from alembic import command
    from alembic.util.exc import CommandError

    try:
        command.upgrade(_alembic_config(url), revision)
    except CommandError as exc:
        # The revision asked for is checked before (``luc migrate --revision``): the one
        # Alembic cannot find is the database's, a newer LUC's (a rolled-back deploy).
        # Before, a traceback of 124 lines said so in Alembic's words.
        if "Can't locate revision" not in str(exc):
            raise
        raise DatabaseSetupError(
            f"migrations failed: {exc}: the schema was migrated by a newer LUC (this one's "
            f"newest revision is {head_revision()}); run the newer LUC, or restore the "
            "database from before its migration"
        ) from exc
    except Exception as exc:
        translated = migration_error(exc, url)
        if translated is exc:
            raise
        raise translated from exc


async def migrate(url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision`` without blocking the event loop."""
    await asyncio.to_thread(migrate_sync, url, revision)


def head_revision() -> str:
    """The revision ``migrate`` brings the schema to: the newest in ``db/versions``."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(migrations_dir())).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration in {migrations_dir() / 'versions'}")
    return str(head)


def known_revisions() -> set[str]:
    """Every revision in ``db/versions`` (one outside it was made by a newer LUC)."""
    from alembic.script import ScriptDirectory

    return {script.revision for script in ScriptDirectory(str(migrations_dir())).walk_revisions()}


async def schema_revision(conn: Connection) -> str | None:
    """The revision the database's schema is at; ``None`` when Alembic never ran there."""
    try:
        revision: str | None = await conn.fetchval("SELECT version_num FROM alembic_version")
    except asyncpg.UndefinedTableError:
        return None
    return revision


def run_sql(sql: str) -> None:
    """Execute a multi-statement SQL script inside the current Alembic migration.

    SQLAlchemy's asyncpg adapter prepares every statement, and a prepared statement holds
    one command; asyncpg's own ``execute`` without arguments takes a whole script.
    """
    from alembic import op
    from sqlalchemy.util import await_only

    bind = op.get_bind()
    bind.exec_driver_sql("SELECT 1")  # opens the migration's transaction on the driver
    driver = bind.connection.dbapi_connection
    assert driver is not None
    await_only(driver.driver_connection.execute(sql))


async def check_schema_revision(conn: Connection) -> None:
    """``DatabaseSetupError`` unless the schema is at this LUC's newest migration."""
    current = await schema_revision(conn)
    head = await asyncio.to_thread(head_revision)
    if current != head:
        raise DatabaseSetupError(
            f"the schema is at {current or 'no revision'}, this LUC needs {head}: run "
            "`luc migrate` with LUC_DATABASE_URL set to a direct connection of the schema's "
            "owner (not through a transaction pooler)"
        )
