"""Schemathesis walks the OpenAPI document: every operation, bounded examples, no 5xx and
every answer as documented."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from service.app import create_app
from service.auth.keys import create_key
from service.db import connect, with_database
from service.settings import load_settings
from tests.conftest import ServerProcess

pytestmark = pytest.mark.slow


async def _admin(admin_url: str, sql: str) -> None:
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def luc_server(
    admin_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str]]:
    name = f"luc_fuzz_{uuid.uuid4().hex[:12]}"
    asyncio.run(_admin(admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"'))
    url = with_database(admin_url, name)

    async def make_key() -> str:
        conn = await connect(url)
        try:
            # An id no generated path parameter will hit: revokeKey must not revoke this key.
            await conn.execute("ALTER TABLE api_keys ALTER COLUMN id RESTART WITH 7342198451")
            _, secret = await create_key(conn, "schemathesis", "admin")
        finally:
            await conn.close()
        return secret

    key = asyncio.run(make_key())
    log: Path = tmp_path_factory.mktemp("fuzz") / "server.log"
    server = ServerProcess(url, log, LUC_AUTH="on")
    server.start()
    served = httpx.get(f"{server.base_url}/schema/openapi.json", timeout=10)
    assert served.json() == DOCUMENT
    yield server, key
    server.stop()
    asyncio.run(_admin(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# The document of the app as built in-process; the server fixture checks that the running
# server serves exactly this one. (schemathesis.pytest.from_fixture fails under pytest 9.)
DOCUMENT = create_app(
    load_settings({"LUC_DATABASE_URL": "postgresql://unused@127.0.0.1:1/unused"})
).openapi_schema.to_schema()
schema = schemathesis.openapi.from_dict(DOCUMENT)


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_without_server_errors_and_as_documented(
    case: Any, luc_server: tuple[ServerProcess, str]
) -> None:
    server, key = luc_server
    case.call_and_validate(
        base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}
    )
