"""The ``luc`` command: serve, migrate, demo."""

from __future__ import annotations

import asyncio

import click

from service.settings import get_settings


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """LUC, the LLM usage cost ledger.

    LUC meters every LLM call the AIMS gateway makes, prices it against a versioned model
    catalog and keeps the money in an append-only ledger, rolled up per job and agent.

    Configuration comes from LUC_* environment variables; with LUC_DATABASE_URL unset,
    LUC runs its own embedded PostgreSQL in LUC_DATA_DIR.
    """


@main.command()
@click.option("--host", default=None, help="Address to bind (default LUC_HOST or 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port to bind (default LUC_PORT or 8000).")
def serve(host: str | None, port: int | None) -> None:
    """Run the HTTP API (migrates the database and loads the AIMS catalog first)."""
    import uvicorn

    from service.app import create_app
    from service.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.server.log_level, settings.server.log_format)
    uvicorn.run(
        create_app(settings),
        host=host or settings.server.host,
        port=settings.server.port if port is None else port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


@main.command()
@click.option("--revision", default="head", show_default=True, help="Alembic revision to reach.")
def migrate(revision: str) -> None:
    """Apply database migrations (start-up does this too) and load the AIMS catalog."""
    from service.catalog.service import seed_catalog
    from service.db import create_pool, migrate_sync, resolve_database_url

    settings = get_settings()

    async def run() -> None:
        url = await resolve_database_url(settings.database)
        await asyncio.to_thread(migrate_sync, url, revision)
        pool = await create_pool(url, settings.database)
        try:
            async with pool.acquire() as conn:
                seeded = await seed_catalog(conn)
        finally:
            await pool.close()
        click.echo(
            f"schema at {revision}; AIMS catalog {'loaded' if seeded else 'already present'}"
        )

    asyncio.run(run())
