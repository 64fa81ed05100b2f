"""``luc serve`` and ``luc migrate``: the two commands that create and migrate a database."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys

import click

from service.cli.database import (
    EMBEDDED_START_FAILURES,
    connect_to,
    describe,
    pgdata_of,
    say,
)
from service.db import CONNECTION_ERRORS
from service.errors import DatabaseUnavailableError
from service.settings import get_settings


@click.command()
@click.option("--host", default=None, help="Address to bind (default LUC_HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to bind (default LUC_PORT or 8000).")
def serve(host: str | None, port: int | None) -> None:
    """Run the HTTP API (creates and migrates the database and loads the AIMS catalog first)."""
    import structlog
    import uvicorn

    from service.app import create_app
    from service.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.server.log_level, settings.server.log_format)
    structlog.get_logger("luc").info("database", database=describe(settings.database))
    # uvicorn re-raises SIGTERM once it has shut down gracefully; with the default handler
    # the process would die without running atexit, leaving the embedded PostgreSQL up.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    # A 5,000-event batch allocates hundreds of thousands of short-lived objects; with the
    # default thresholds the collector ran dozens of times per batch (a fifth of the CPU,
    # measured with py-spy). Start-up objects are frozen out of every collection.
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    uvicorn.run(
        create_app(settings),
        host=host or settings.server.host,
        port=settings.server.port if port is None else port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@click.command()
@click.option("--revision", default="head", show_default=True, help="Alembic revision to reach.")
def migrate(revision: str) -> None:
    """Create the database if needed, apply migrations and load the AIMS catalog.

    `luc serve` does the same at start; the other commands never do, so run this (or start
    the server once) before them on a new database.
    """
    from service.catalog.service import seed_catalog
    from service.db.embedded import resolve_database_url
    from service.db.migrations import migrate as migrate_schema
    from service.db.migrations import schema_revision
    from service.recording.catalog_upgrade import upgrade_aims_catalog
    from service.wire import money_text

    settings = get_settings()
    database = settings.database

    async def run() -> None:
        new = database.url is None and not (pgdata_of(database) / "PG_VERSION").is_file()
        try:
            url = await resolve_database_url(database)
        except EMBEDDED_START_FAILURES as exc:
            raise DatabaseUnavailableError(
                f"cannot start the embedded PostgreSQL in {database.data_dir}: {exc}"
            ) from exc
        say(database, url, "; created now" if new else "")
        conn = await connect_to(database, url)
        try:
            before = await schema_revision(conn)
            await migrate_schema(url, revision)
            seeded = await seed_catalog(conn)
            upgrade = await upgrade_aims_catalog(conn, default_plan=settings.billing.default_plan)
        finally:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await conn.close()
        click.echo(
            f"schema at {revision} (was {before or 'empty'}); "
            f"AIMS catalog {'loaded' if seeded else 'already present'}"
        )
        if upgrade is not None:
            summary = upgrade.summary
            click.echo(
                f"AIMS catalog completed with cache and long-context prices: version "
                f"{upgrade.version_id} (beside version {upgrade.replaced_version_id}); "
                f"{summary.events_changed} events re-rated by {summary.entries_appended} "
                f"adjustment entries, {money_text(summary.delta_usd)} USD in all"
            )

    asyncio.run(run())
