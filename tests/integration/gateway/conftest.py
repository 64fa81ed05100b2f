"""Fixtures of the gateway tests: fake providers on loopback and a gateway on the test's
database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.auth.keys import create_key
from service.catalog.service import CatalogCache
from service.db import create_pool
from service.gateway.chain import Chain, Provider, upstream_client
from service.gateway.metering import Gateway
from service.gateway.openrouter import OpenRouterProvider
from service.gateway.vertex import VertexProvider
from service.recording.adapters import DatabaseBudgets, DatabaseLookup, database_catalog
from service.recording.sink import RecordingSink
from service.settings import DatabaseSettings, IngestSettings
from tests.support.fake_openrouter import FAST_RETRY, FakeOpenRouter
from tests.support.fake_vertex import FakeVertex
from tests.support.relayed import relayed_to_scripted
from tests.support.scripted_http import Scripted
from tests.support.settings import proxy_settings


@pytest.fixture
def fake_openrouter() -> Iterator[FakeOpenRouter]:
    fake = FakeOpenRouter().start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_vertex() -> Iterator[FakeVertex]:
    fake = FakeVertex().start()
    yield fake
    fake.stop()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, DatabaseSettings(pool_min_size=1, pool_max_size=4))
    yield pool
    await pool.close()


@pytest.fixture
async def http() -> AsyncIterator[Any]:
    client = upstream_client(timeout_seconds=10)
    yield client
    await client.aclose()


@pytest.fixture
def openrouter(http: Any, fake_openrouter: FakeOpenRouter) -> OpenRouterProvider:
    return OpenRouterProvider(
        http,
        fake_openrouter.base_url,
        fake_openrouter.api_key,
        FAST_RETRY,
        http_referer="https://aims.test",
        app_title="AIMS tests",
        generation_delays=(0.05, 0.1, 0.2),
    )


@pytest.fixture
def vertex(http: Any, fake_vertex: FakeVertex) -> VertexProvider:
    return VertexProvider(http, fake_vertex.base_url, FAST_RETRY, access_token=fake_vertex.api_key)


@pytest.fixture
def make_gateway(pool: asyncpg.Pool) -> Callable[..., Gateway]:
    """A gateway over ``providers`` that records into the test's ledger, admitting calls as
    LUC's does (one look-up for the catalog and the budgets)."""

    def make(*providers: Provider) -> Gateway:
        cache = CatalogCache()
        return Gateway(
            Chain(providers),
            RecordingSink(pool, cache, IngestSettings()),
            database_catalog(pool, cache),
            budgets=DatabaseBudgets(pool, reservation_seconds=300),
            lookup=DatabaseLookup(pool, cache),
        )

    return make


@pytest.fixture
async def proxy(
    database_url: str, fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> AsyncIterator[AsyncTestClient[Any]]:
    """LUC's proxy in this process, to the fake OpenRouter alone, keys on, called with an
    ``ingest`` key as a gateway's SDK would."""
    _, key = await create_key(db, "sdk", "ingest")
    async with AsyncTestClient(
        app=create_app(proxy_settings(database_url, fake_openrouter))
    ) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client


@pytest.fixture
async def relayed(database_url: str) -> AsyncIterator[tuple[Scripted, AsyncTestClient[Any]]]:
    async with relayed_to_scripted(database_url) as pair:
        yield pair
