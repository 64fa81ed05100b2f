"""Schemathesis walks the OpenAPI document against a real ``luc serve`` with keys on:
every operation, 20 generated requests each, no 5xx, and every answer (status, content
type, headers, body) as the document says; a guarded route must refuse a call without
its key."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ignored_auth,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.settings import load_settings
from tests.support.databases import admin_sql, new_database_sync
from tests.support.keys import new_key
from tests.support.servers import ServerProcess

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def luc_server(
    admin_url: str, template_database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServerProcess, str]]:
    with new_database_sync(admin_url, "luc_fuzz", template_database) as url:
        # An id no generated path parameter will hit: revokeKey must not revoke this key.
        asyncio.run(admin_sql(url, "ALTER TABLE api_keys ALTER COLUMN id RESTART WITH 7342198451"))
        key = asyncio.run(new_key(url, "admin", "schemathesis"))
        log: Path = tmp_path_factory.mktemp("fuzz") / "server.log"
        server = ServerProcess(url, log, LUC_AUTH="on")
        server.start()
        served = httpx.get(f"{server.base_url}/schema/openapi.json", timeout=10)
        assert served.json() == DOCUMENT
        yield server, key
        server.stop()


# The document of the app as built in-process; the server fixture checks that the running
# server serves exactly this one. (schemathesis.pytest.from_fixture fails under pytest 9.)
DOCUMENT = create_app(
    load_settings({"LUC_DATABASE_URL": "postgresql://unused@127.0.0.1:1/unused"})
).openapi_schema.to_schema()
schema = schemathesis.openapi.from_dict(DOCUMENT)


# What "every answer matches the schema" means, plus: every guarded route really asks for the
# key its document declares. Left out on purpose: positive_data_acceptance (a schema cannot
# say "cached_input_tokens ≤ input_tokens" or which cursors exist, so valid-looking requests
# are refused by design) and negative_data_rejection (a batch answers a bad event inside a
# 200, per event, by design).
CHECKS = [
    not_a_server_error,
    allow_header_conformance,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]


@schema.parametrize()
@settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_without_server_errors_and_as_documented(
    case: Any, luc_server: tuple[ServerProcess, str]
) -> None:
    server, key = luc_server
    case.call_and_validate(
        base_url=server.base_url, headers={"Authorization": f"Bearer {key}"}, checks=CHECKS
    )
