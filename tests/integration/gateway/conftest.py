"""Fixtures of the gateway tests: fake providers on loopback, a gateway on the test's
database, and a helper reading what the ledger holds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import pytest

from service.catalog.service import CatalogCache
from service.db import create_pool
from service.gateway.chain import Chain, Provider, upstream_client
from service.gateway.gateway import Gateway
from service.gateway.local import DatabaseBudgets, RecordingSink, database_catalog
from service.gateway.openrouter import OpenRouterProvider
from service.gateway.upstream import RetryPolicy
from service.gateway.vertex import VertexProvider
from service.settings import DatabaseSettings, IngestSettings
from tests.support.fake_openrouter import FakeOpenRouter
from tests.support.fake_vertex import FakeVertex

FAST_RETRY = RetryPolicy(max_retries=2, backoff_base_seconds=0.02, max_retry_after_seconds=5)


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
    """A gateway over ``providers`` that records into the test's ledger."""

    def make(*providers: Provider) -> Gateway:
        cache = CatalogCache()
        return Gateway(
            Chain(providers),
            RecordingSink(pool, cache, IngestSettings()),
            database_catalog(pool, cache),
            budgets=DatabaseBudgets(pool, reservation_seconds=300),
        )

    return make


LEDGER = """
SELECT event_id, kind, job_id, agent, model, provider, input_tokens, cached_input_tokens,
       cache_write_tokens, output_tokens, reasoning_tokens, cost_usd, provider_cost_usd
FROM ledger_entries ORDER BY id
"""
EVENT = "SELECT status, attributes FROM usage_events WHERE event_id = $1"


async def ledger(db: asyncpg.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in await db.fetch(LEDGER)]
