"""LUC deployed as an operator deploys it: Debian's PostgreSQL through ``LUC_DATABASE_URL``.

Each test starts the packaged server (``tests/support/postgres.py``) and sets it up with
the statements of README's "Operating LUC": an owner role that migrates, and a runtime
role, no superuser, with exactly the documented grants, under which ``luc serve`` runs.
Then what operators met: a missing privilege (clear errors, never a 500), the months of
the ledger kept while running, TLS set in the URL, a database that comes up late, and
PgBouncer in transaction mode.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from service.api.errors import PRIVILEGE_MISSING
from service.db import STARTING
from service.db.migrations import migrate_sync
from service.errors import DatabaseSetupError
from tests.support.ledger_truth import (
    assert_jobs_match,
    assert_rollups_equal_ledger,
    expected_jobs,
    make_events,
)
from tests.support.paths import PROJECT_ROOT
from tests.support.ports import closed_port
from tests.support.postgres import DebianPostgres, PgBouncer, started_postgres
from tests.support.servers import TEST_DEFAULTS, ServerProcess
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow

OWNER, OWNER_PASSWORD = "luc_owner", "owner-secret"
APP, APP_PASSWORD = "luc_app", "app-secret"

# README, "Operating LUC": run once as a superuser (here through psql, as an operator would).
ROLES = f"""
CREATE ROLE {OWNER} LOGIN PASSWORD '{OWNER_PASSWORD}';
CREATE ROLE {APP} LOGIN PASSWORD '{APP_PASSWORD}';
"""
DATABASE = """
CREATE DATABASE {db} OWNER {owner};
REVOKE ALL ON DATABASE {db} FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE {db} TO {app};
"""
SCHEMA = """
GRANT USAGE ON SCHEMA public TO {app};
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
    GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app};
ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public
    GRANT USAGE, SELECT ON SEQUENCES TO {app};
ALTER ROLE {app} SET statement_timeout = '30s';
"""


@pytest.fixture(scope="module")
def postgres() -> Iterator[DebianPostgres]:
    for server in started_postgres():
        server.psql(ROLES)
        yield server


@pytest.fixture(scope="module")
def tls_postgres() -> Iterator[DebianPostgres]:
    for server in started_postgres(tls=True):
        server.psql(ROLES)
        yield server


_databases = iter(range(1, 1000))


def set_up_database(server: DebianPostgres) -> str:
    """A new database set up as README says; its name."""
    name = f"luc_{os.getpid()}_{next(_databases)}"
    server.psql(DATABASE.format(db=name, owner=OWNER, app=APP))
    server.psql(SCHEMA.format(owner=OWNER, app=APP), database=name)
    return name


def owner_url(server: DebianPostgres, database: str, **params: str) -> str:
    from tests.support.postgres import url

    return url(server.port, OWNER, OWNER_PASSWORD, database, **params)


def app_url(server: DebianPostgres, database: str, **params: str) -> str:
    from tests.support.postgres import url

    return url(server.port, APP, APP_PASSWORD, database, **params)


def recent_events(prefix: str, count: int, seed: int) -> list[dict[str, Any]]:
    """Events of the last hours (37 s apart): in this month's partition, or last month's."""
    start = datetime.now(UTC) - timedelta(seconds=37 * count + 600)
    return make_events(prefix, count, jobs=["job-a", "job-b"], seed=seed, start=start)[:count]


def send_batches(base_url: str, events: list[dict[str, Any]], size: int) -> None:
    with httpx.Client(base_url=base_url, timeout=60) as http:
        for i in range(0, len(events), size):
            response = http.post("/v1/events/batch", json={"events": events[i : i + size]})
            assert response.status_code == 200, response.text
            assert response.json()["accepted"] == len(events[i : i + size]), response.text


async def fetch(url: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(url)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def months_ahead() -> list[str]:
    """Partition names of this month and the next two."""
    now = datetime.now(UTC)
    names = []
    for n in range(3):
        year, month = divmod(now.month - 1 + n, 12)
        names.append(f"ledger_entries_{now.year + year}_{month + 1:02d}")
    return names


def server(url: str, tmp_path: Path, name: str = "luc", **env: str) -> ServerProcess:
    return ServerProcess(
        url,
        tmp_path / f"{name}.log",
        defaults=TEST_DEFAULTS,
        LUC_DATA_DIR=str(tmp_path / name),
        **env,
    )


def failed_start(url: str, tmp_path: Path, workers: str, startup_timeout: str) -> str:
    """``luc serve`` on ``url``, expected to stop at start: its output, once it exited 3."""
    done = subprocess.run(
        [sys.executable, "-m", "service", "serve", "--workers", workers],
        env={
            **os.environ,
            "LUC_DATABASE_URL": url,
            "LUC_DB_STARTUP_TIMEOUT_SECONDS": startup_timeout,
            "LUC_PORT": "0",
            "LUC_DATA_DIR": str(tmp_path / "luc"),
        },
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 3, done.stderr[-2000:]
    return done.stdout + done.stderr


# The runtime role ---------------------------------------------------------------------------


def test_migrated_by_the_owner_and_served_by_a_runtime_role_with_the_documented_grants(
    postgres: DebianPostgres, tmp_path: Path
) -> None:
    database = set_up_database(postgres)
    # `luc migrate` as the owner: the schema, the catalog and the coming months.
    done = subprocess.run(
        [sys.executable, "-m", "service", "migrate"],
        env={**os.environ, "LUC_DATABASE_URL": owner_url(postgres, database)},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    url = app_url(postgres, database)
    rows = asyncio.run(
        fetch(
            url,
            "SELECT c.relname, pg_get_userbyid(c.relowner) AS owner FROM pg_class c "
            "WHERE c.relname LIKE 'ledger_entries_2%' ORDER BY 1",
        )
    )
    assert {r["relname"] for r in rows} >= set(months_ahead())
    assert {r["owner"] for r in rows} == {OWNER}
    role = asyncio.run(
        fetch(url, "SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = $1", APP)
    )
    assert (role[0]["rolsuper"], role[0]["rolcreatedb"]) == (False, False)

    luc = server(url, tmp_path)
    luc.start()
    try:
        events = recent_events("runtime", 120, seed=1)
        send_batches(luc.base_url, events[:20], size=20)  # inline
        send_batches(luc.base_url, events[20:], size=50)  # staged in a temporary table
        assert_jobs_match(luc.base_url, events)
        with httpx.Client(base_url=luc.base_url, timeout=60) as http:
            invoice = http.post("/v1/jobs/job-a/invoices")
        assert invoice.status_code == 201, invoice.text
        want = expected_jobs(events)["job-a"].cost_usd
        assert invoice.json()["total_usd"] == str(want.quantize(Decimal("0.01"), ROUND_HALF_UP))
    finally:
        luc.stop()
    log = luc.log_path.read_text()
    assert "database_privilege_missing" not in log, log[-2000:]


def test_migrating_without_create_on_the_schema_names_that_privilege(
    postgres: DebianPostgres, tmp_path: Path
) -> None:
    """Before: only "current transaction is aborted … pg_advisory_unlock" was shown."""
    database = set_up_database(postgres)
    url = app_url(postgres, database)  # a runtime role, asked to migrate a new database
    with pytest.raises(DatabaseSetupError) as raised:
        migrate_sync(url)
    message = raised.value.message
    assert "permission denied for schema public" in message
    assert "it needs CREATE on schema public" in message
    assert f"{APP} may not change LUC's schema" in message
    assert "current transaction is aborted" not in message
    # `luc migrate` and `luc serve` show the same first error.
    migrate = subprocess.run(
        [sys.executable, "-m", "service", "migrate"],
        env={**os.environ, "LUC_DATABASE_URL": url},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert migrate.returncode != 0
    assert "it needs CREATE on schema public" in migrate.stderr
    assert "current transaction is aborted" not in migrate.stderr
    luc = server(url, tmp_path)
    with pytest.raises(RuntimeError, match="luc serve exited") as exited:
        luc.start()
    assert "it needs CREATE on schema public" in str(exited.value)
    assert "current transaction is aborted" not in luc.log_path.read_text()


def test_a_missing_grant_stops_the_start_naming_it(
    postgres: DebianPostgres, tmp_path: Path
) -> None:
    database = set_up_database(postgres)
    migrate_sync(owner_url(postgres, database))
    postgres.psql(f"REVOKE INSERT ON event_keys FROM {APP}", database=database)
    luc = server(app_url(postgres, database), tmp_path)
    with pytest.raises(RuntimeError, match="luc serve exited") as exited:
        luc.start()
    assert f"GRANT INSERT ON TABLE public.event_keys TO {APP}" in str(exited.value)


def test_without_temporary_large_batches_are_stored_and_a_grant_revoked_later_is_503(
    postgres: DebianPostgres, tmp_path: Path
) -> None:
    """Before: a 33-event batch answered 500 "permission denied to create temporary
    tables" while /readyz said ready."""
    database = set_up_database(postgres)
    migrate_sync(owner_url(postgres, database))
    postgres.psql(f"REVOKE TEMPORARY ON DATABASE {database} FROM {APP}")
    url = app_url(postgres, database)
    luc = server(url, tmp_path)
    luc.start()
    try:
        events = recent_events("notemp", 33 + 100 + 5, seed=2)
        send_batches(luc.base_url, events[:33], size=33)
        send_batches(luc.base_url, events[33:133], size=100)
        # Single events: without TEMPORARY a connection cannot make the function that
        # opens a group in one round trip, so every group takes the long way.
        with httpx.Client(base_url=luc.base_url, timeout=60) as http:
            for event in events[133:]:
                response = http.post("/v1/events", json=event)
                assert response.status_code == 201, response.text
        assert_jobs_match(luc.base_url, events)
        # A grant taken away while serving: the operator's to fix, the client's to retry.
        postgres.psql(f"REVOKE INSERT ON event_keys FROM {APP}", database=database)
        with httpx.Client(base_url=luc.base_url, timeout=60) as http:
            refused = http.post("/v1/events/batch", json={"events": recent_events("x", 1, 3)})
        assert refused.status_code == 503, refused.text
        assert refused.json()["detail"] == PRIVILEGE_MISSING
        assert int(refused.headers["retry-after"]) >= 1
    finally:
        luc.stop()
    log = luc.log_path.read_text()
    assert f'GRANT TEMPORARY ON DATABASE \\"{database}\\" TO {APP}' in log, log[-2000:]
    assert "permission denied for table event_keys" in log
    assert "one_trip_recording_off" in log, log[-2000:]


# Partitions ---------------------------------------------------------------------------------


def test_a_month_partition_is_made_while_running_by_the_runtime_role(
    postgres: DebianPostgres, tmp_path: Path
) -> None:
    database = set_up_database(postgres)
    owner = owner_url(postgres, database)
    migrate_sync(owner)
    luc = server(
        app_url(postgres, database),
        tmp_path,
        LUC_PARTITION_CHECK_SECONDS="0.2",
        LUC_LOG_LEVEL="info",
    )
    luc.start()
    try:
        # The month after next goes (it is empty): the running process makes it again.
        gone = months_ahead()[2]
        postgres.psql(f"DROP TABLE {gone}", database=database)
        sql = (
            "SELECT pg_get_userbyid(relowner) FROM pg_class c JOIN pg_inherits i "
            "ON i.inhrelid = c.oid WHERE c.relname = $1"
        )
        rows = wait_for(lambda: asyncio.run(fetch(owner, sql, gone)), 60, f"{gone} made again")
        assert rows[0][0] == OWNER  # made with the owner's rights, by the runtime role
    finally:
        luc.stop()
    assert "ledger_months_created" in luc.log_path.read_text()


def test_the_cron_command_as_the_owner_makes_a_missing_month(
    postgres: DebianPostgres,
) -> None:
    database = set_up_database(postgres)
    owner = owner_url(postgres, database)
    migrate_sync(owner)
    gone = months_ahead()[1]
    postgres.psql(f"DROP TABLE {gone}", database=database)
    done = subprocess.run(
        [sys.executable, "-m", "service", "partitions", "ensure"],
        env={**os.environ, "LUC_DATABASE_URL": owner},
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # The dropped month, and the month before this one (the migration makes none before).
    assert done.stdout.startswith("2 month partitions created; "), done.stdout
    assert months_ahead()[2] in done.stdout
    assert OWNER_PASSWORD not in done.stderr  # the database is named, without its password
    rows = asyncio.run(fetch(owner, "SELECT to_regclass($1) IS NOT NULL AS made", gone))
    assert rows[0]["made"]


async def test_two_processes_making_the_same_months_at_once_both_succeed(
    postgres: DebianPostgres,
) -> None:
    database = set_up_database(postgres)
    owner = owner_url(postgres, database)
    await asyncio.to_thread(migrate_sync, owner)
    for name in months_ahead():
        postgres.psql(f"DROP TABLE {name}", database=database)
    from service.db import connect
    from service.ledger.service import ensure_months_ahead

    conns = [await connect(app_url(postgres, database)) for _ in range(4)]
    try:
        made = await asyncio.gather(*(ensure_months_ahead(c) for c in conns))
    finally:
        for conn in conns:
            await conn.close()
    assert sorted(made) == [0, 0, 0, 4]  # the three, and the month before this one


# TLS ----------------------------------------------------------------------------------------


def test_tls_set_in_the_url_on_the_migration_and_the_serving_paths(
    tls_postgres: DebianPostgres, tmp_path: Path
) -> None:
    """Before: ``?sslmode=require`` failed in migrations (an unexpected keyword argument
    to connect()) and ``?ssl=require`` in the pool ("parameter "ssl" cannot be changed")."""
    database = set_up_database(tls_postgres)
    # The server accepts TCP over TLS only: a plain connection is refused.
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
        asyncio.run(fetch(owner_url(tls_postgres, database, sslmode="disable"), "SELECT 1"))
    verified = owner_url(
        tls_postgres, database, sslmode="verify-full", sslrootcert=str(tls_postgres.ca_file)
    )
    migrate_sync(verified.replace("127.0.0.1", "localhost"))
    ca = str(tls_postgres.ca_file)
    for n, params in enumerate(
        ({"sslmode": "require"}, {"ssl": "require"}, {"sslmode": "verify-full", "sslrootcert": ca})
    ):
        url = app_url(tls_postgres, database, **params).replace("127.0.0.1", "localhost")
        luc = server(url, tmp_path, name=f"luc-{n}")
        luc.start()
        try:
            send_batches(luc.base_url, recent_events(f"tls{n}", 40, seed=4 + n), size=40)
            # Every connection of LUC's pool is encrypted (seen by the superuser: other
            # roles do not see whose a connection is).
            seen = tls_postgres.psql(
                "SELECT count(*), bool_and(s.ssl) FROM pg_stat_ssl s "
                "JOIN pg_stat_activity a USING (pid) WHERE a.application_name = 'luc'"
            )
            count, encrypted = seen.split("|")
            assert int(count) >= 1 and encrypted == "t", seen
        finally:
            luc.stop()


# Start-up -----------------------------------------------------------------------------------


def test_start_up_waits_for_a_database_that_comes_up_late(tmp_path: Path) -> None:
    late = DebianPostgres()  # made, not started: nothing listens on its port yet
    try:
        late.start()
        late.psql(ROLES)
        database = set_up_database(late)
        migrate_sync(owner_url(late, database))
        late.stop()
        luc = server(app_url(late, database), tmp_path, LUC_DB_STARTUP_TIMEOUT_SECONDS="120")
        starting = threading.Thread(target=luc.start)
        starting.start()
        try:

            def answers_503() -> bool:
                try:
                    with httpx.Client(base_url=luc.base_url, timeout=5) as http:
                        ready = http.get("/readyz")
                        event = http.post("/v1/events", json=recent_events("late", 1, 6)[0])
                        alive = http.get("/healthz")
                except httpx.HTTPError:
                    return False  # not listening yet
                assert ready.status_code == 503, ready.text
                assert ready.headers["retry-after"] == "5"  # README: 503 with Retry-After
                assert event.status_code == 503, event.text
                assert event.json()["detail"] == STARTING
                assert int(event.headers["retry-after"]) >= 1
                assert alive.status_code == 200
                return True

            wait_for(answers_503, 60, "LUC serving 503 while PostgreSQL is down")
            wait_for(
                lambda: luc.log_path.read_text().count('"database_waiting"') >= 2,
                60,
                "a log line per attempt",
            )
            late.restart_on_same_port()
            starting.join(120)
            assert not starting.is_alive()
            send_batches(luc.base_url, recent_events("late", 40, seed=6), size=40)
        finally:
            starting.join(120)
            luc.stop()
    finally:
        late.cleanup()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_start_up_gives_up_after_its_timeout_with_a_failure_status(
    tmp_path: Path, workers: str
) -> None:
    with closed_port() as port:
        url = f"postgresql://{APP}:{APP_PASSWORD}@127.0.0.1:{port}/luc"
        output = failed_start(url, tmp_path, workers, startup_timeout="1")
    assert '"startup_failed"' in output
    assert "did not answer within 1 s" in output
    assert APP_PASSWORD not in output
    # One line says why, as every other failed start: the task's SystemExit reached uvicorn
    # as an exception group, logged whole (a traceback in every worker's log).
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("sslmode=bogus", "`sslmode` parameter must be one of"),
        ("ssl=maybe", "ssl='maybe' is not a TLS mode"),
    ],
)
def test_a_database_url_that_cannot_be_right_stops_the_start_at_once(
    tmp_path: Path, query: str, problem: str
) -> None:
    # Retried for LUC_DB_STARTUP_TIMEOUT_SECONDS as if PostgreSQL were down, then a traceback:
    # no wait makes a malformed URL right.
    with closed_port() as port:
        url = f"postgresql://127.0.0.1:{port}/luc?{query}"
        output = failed_start(url, tmp_path, "1", startup_timeout="600")
    assert '"startup_failed"' in output
    assert problem in output
    assert "LUC_DATABASE_URL" in output
    assert "database_waiting" not in output
    assert "Traceback" not in output


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize(
    ("user", "password", "database", "error", "says"),
    [
        (APP, "wrong-secret", None, "InvalidPasswordError", "password authentication failed"),
        # PostgreSQL does not tell an unknown role from a wrong password.
        ("luc_nobody", "x", None, "InvalidPasswordError", 'for user \\"luc_nobody\\"'),
        (APP, APP_PASSWORD, "luc_no_such_db", "InvalidCatalogNameError", "luc_no_such_db"),
    ],
)
def test_a_database_that_refuses_luc_stops_the_start_with_one_line(
    postgres: DebianPostgres,
    tmp_path: Path,
    workers: str,
    user: str,
    password: str,
    database: str | None,
    error: str,
    says: str,
) -> None:
    """A wrong password, an unknown role or database: with one worker (the default on a
    one-CPU host) the refusal escaped the start as a traceback; with several, the parent
    said it in one line. Both say it in one line now, and exit 3 at once."""
    from tests.support.postgres import url

    existing = set_up_database(postgres)
    refused = url(postgres.port, user, password, database or existing)
    output = failed_start(refused, tmp_path, workers, startup_timeout="600")
    failed = [line for line in output.splitlines() if '"startup_failed"' in line]
    assert len(failed) == 1, output[-3000:]
    assert f'"error":"{error}"' in failed[0] and says in failed[0], failed[0]
    assert "Traceback" not in output
    assert "database_waiting" not in output
    assert "wrong-secret" not in output


# PgBouncer ----------------------------------------------------------------------------------


@pytest.fixture
def pgbouncer(postgres: DebianPostgres) -> Iterator[tuple[PgBouncer, str]]:
    database = set_up_database(postgres)
    migrate_sync(owner_url(postgres, database))  # directly: migrations bypass PgBouncer
    bouncer = PgBouncer(postgres, database, {APP: APP_PASSWORD})
    try:
        bouncer.start()
        yield bouncer, database
    finally:
        bouncer.cleanup()


def test_behind_a_transaction_pooler_serve_does_not_migrate_and_says_so(
    postgres: DebianPostgres, tmp_path: Path
) -> None:
    database = set_up_database(postgres)  # never migrated
    luc = server(app_url(postgres, database), tmp_path, LUC_DB_POOLER="transaction")
    with pytest.raises(RuntimeError, match="luc serve exited") as exited:
        luc.start()
    assert "the schema is at no revision, this LUC needs" in str(exited.value)
    assert "run `luc migrate`" in str(exited.value)


def test_ingest_and_invoices_through_pgbouncer_in_transaction_mode(
    pgbouncer: tuple[PgBouncer, str], postgres: DebianPostgres, tmp_path: Path
) -> None:
    bouncer, database = pgbouncer
    luc = server(
        bouncer.url(APP),
        tmp_path,
        LUC_DB_POOLER="transaction",
        LUC_DB_POOL_MIN="4",
        LUC_DB_POOL_MAX="8",
    )
    luc.start()
    try:
        events = recent_events("bouncer", 600, seed=7)
        chunks = [events[:100], events[100:300], events[300:500], events[500:]]

        def send(chunk: list[dict[str, Any]], n: int) -> None:
            if n % 2:
                send_batches(luc.base_url, chunk, size=50)  # temporary-table batches
            else:
                with httpx.Client(base_url=luc.base_url, timeout=60) as http:
                    for event in chunk:  # single events: the group writers
                        response = http.post("/v1/events", json=event)
                        assert response.status_code in (200, 201, 202), response.text

        threads = [threading.Thread(target=send, args=(c, n)) for n, c in enumerate(chunks)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert_jobs_match(luc.base_url, events)
        with httpx.Client(base_url=luc.base_url, timeout=60) as http:
            invoice = http.post("/v1/jobs/job-b/invoices")
            again = http.post("/v1/jobs/job-b/invoices")
        assert invoice.status_code == 201, invoice.text
        want = expected_jobs(events)["job-b"].cost_usd
        assert invoice.json()["total_usd"] == str(want.quantize(Decimal("0.01"), ROUND_HALF_UP))
        assert again.status_code == 409, again.text
    finally:
        luc.stop()

    async def check() -> None:
        conn = await asyncpg.connect(owner_url(postgres, database))
        try:
            assert await conn.fetchval("SELECT count(*) FROM event_keys") == len(events)
            await assert_rollups_equal_ledger(conn)
        finally:
            await conn.close()

    asyncio.run(check())
    log = luc.log_path.read_text()
    assert "prepared statement" not in log, log[-2000:]
