"""A delivery attempt that raises, whatever the cause, is a failed attempt: recorded with
its reason, backed off, and dead past the retry window — never left leased, to be claimed
again every lease forever."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from decimal import Decimal

import asyncpg
import pytest

from service.budgets.delivery import Dispatcher, make_webhook_client
from service.budgets.models import NewBudget
from service.budgets.service import create_budget
from service.budgets.targets import Resolver, system_resolver
from service.catalog.service import CatalogCache
from service.db import create_pool
from service.recording.service import record_batch
from service.settings import BudgetSettings, DatabaseSettings
from tests.support.events import usage_event

pytestmark = pytest.mark.asyncio

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

OUTBOX = "SELECT attempts, last_error, locked_until, dead_at FROM alert_outbox"


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, DatabaseSettings(pool_min_size=1, pool_max_size=2))
    yield pool
    await pool.close()


async def _alert_for(pool: asyncpg.Pool, webhook_url: str) -> None:
    """One alert in the outbox for ``webhook_url``: a 0.0004 budget, crossed at 50 % by
    the default event's 0.0003 (1,000 in and 500 out of Gemini 3.0 Flash)."""
    async with pool.acquire() as conn:
        await create_budget(
            conn,
            NewBudget(
                scope="global",
                scope_id=None,
                period="lifetime",
                limit_usd=Decimal("0.0004"),
                thresholds=[Decimal("0.5")],
                hard=False,
                webhook_url=webhook_url,
                webhook_secret=SECRET,
            ),
        )
        await record_batch(conn, CatalogCache(), [usage_event("e1")])
        assert await conn.fetchval("SELECT count(*) FROM alert_outbox") == 1


def _dispatcher(
    pool: asyncpg.Pool, settings: BudgetSettings, resolve: Resolver = system_resolver
) -> Dispatcher:
    return Dispatcher(pool, settings, make_webhook_client(settings), resolve)


async def test_a_host_under_a_wildcard_that_is_no_dns_name_fails_and_dies_with_its_reason(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    # Saved before its name was checked (a wildcard entry let it through unresolved).
    await _alert_for(pool, "https://a..hooks.example.com/x")
    settings = BudgetSettings(allowed_hosts=("*.example.com",), retry_window_seconds=0)
    dispatcher = _dispatcher(pool, settings)
    try:
        assert await dispatcher.deliver_due() == 1
    finally:
        await dispatcher.client.aclose()
    attempts, last_error, locked_until, dead_at = await db.fetchrow(OUTBOX)
    assert attempts == 1
    assert "has an empty label" in last_error
    assert locked_until is None  # released, not held until the lease runs out
    assert dead_at is not None  # the retry window (0 s) is over: dead, can be re-sent


async def test_any_exception_in_an_attempt_counts_as_a_failed_attempt_with_backoff(
    pool: asyncpg.Pool, db: asyncpg.Connection
) -> None:
    await _alert_for(pool, "https://hooks.example.com/x")

    async def broken_resolver(host: str, port: int) -> Sequence[str]:
        raise RuntimeError("resolver bug")

    settings = replace(BudgetSettings(), backoff_base_seconds=600, backoff_max_seconds=600)
    dispatcher = _dispatcher(pool, settings, broken_resolver)
    try:
        assert await dispatcher.deliver_due() == 1
        assert await dispatcher.deliver_due() == 0  # backed off: not claimed again now
    finally:
        await dispatcher.client.aclose()
    attempts, last_error, locked_until, dead_at = await db.fetchrow(OUTBOX)
    assert (attempts, last_error, locked_until, dead_at) == (
        1,
        "RuntimeError: resolver bug",
        None,
        None,
    )
    # 600 s · 2^0 with jitter in [0.5, 1]: between 300 and 600 s from now.
    wait = await db.fetchval("SELECT extract(epoch FROM next_attempt_at - now()) FROM alert_outbox")
    assert 290 < wait <= 600
