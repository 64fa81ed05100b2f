"""A delivery attempt that raises, whatever the cause, is a failed attempt: recorded with
its reason, backed off, and dead past the retry window — never left leased, to be claimed
again every lease forever."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from service.budgets.delivery import Dispatcher, make_webhook_client, redeliver
from service.budgets.service import BudgetChanges, create_budget, update_budget
from service.budgets.targets import Resolver, system_resolver
from service.catalog.service import CatalogCache
from service.db import create_pool
from service.recording.service import record_batch
from service.settings import BudgetSettings, DatabaseSettings
from tests.support.budgets import watched_global_budget
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
    await _alerts_for(pool, webhook_url)
    async with pool.acquire() as conn:
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
    row = await db.fetchrow(OUTBOX)
    assert row is not None
    attempts, last_error, locked_until, dead_at = row
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
    row = await db.fetchrow(OUTBOX)
    assert row is not None
    attempts, last_error, locked_until, dead_at = row
    assert (attempts, last_error, locked_until, dead_at) == (
        1,
        "RuntimeError: resolver bug",
        None,
        None,
    )
    # 600 s · 2^0 with jitter in [0.5, 1]: between 300 and 600 s from now.
    wait = await db.fetchval("SELECT extract(epoch FROM next_attempt_at - now()) FROM alert_outbox")
    assert 290 < wait <= 600


# A hostile receiver, a real HTTP server on loopback: ``/stall-headers`` sends a status
# line and then a header line now and then, never ending its headers; ``/endless-body``
# answers 200 and then never ends its body; ``/gone`` answers 410 Gone, ``/broken`` 500;
# anything else answers 204 at once. Each keeps
# the connection busy well inside any read timeout, so only a deadline on the whole attempt
# ends it.
async def _hostile(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        path = head.split(b" ", 2)[1]
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        await reader.readexactly(length)
        if path == b"/stall-headers":
            writer.write(b"HTTP/1.1 200 OK\r\n")
            while True:
                writer.write(b"x-still-there: yes\r\n")
                await writer.drain()
                await asyncio.sleep(0.1)  # the trickle itself, not a synchronisation
        elif path == b"/broken":
            writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
        elif path == b"/gone":
            writer.write(b"HTTP/1.1 410 Gone\r\ncontent-length: 0\r\n\r\n")
            await writer.drain()
        elif path == b"/endless-body":
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n")
            while True:
                writer.write(b"x" * 65536)
                await writer.drain()
                await asyncio.sleep(0.1)
        else:
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass  # LUC hung up: what it should do with such a receiver
    finally:
        writer.close()


@pytest.fixture
async def hostile_receiver() -> AsyncIterator[str]:
    server = await asyncio.start_server(_hostile, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def _alerts_for(pool: asyncpg.Pool, *webhook_urls: str) -> None:
    """One alert per URL, all raised by one event: a 0.0004 budget each, crossed at 50 % by
    the default event's 0.0003 (1,000 in and 500 out of Gemini 3.0 Flash)."""
    async with pool.acquire() as conn:
        for url in webhook_urls:
            await create_budget(
                conn, watched_global_budget("0.0004", [Decimal("0.5")], url, SECRET)
            )
        await record_batch(conn, CatalogCache(), [usage_event("e1")])


async def test_a_receiver_that_never_ends_its_headers_times_out_and_holds_up_no_other_alert(
    pool: asyncpg.Pool, db: asyncpg.Connection, hostile_receiver: str
) -> None:
    stalling, good = f"{hostile_receiver}/stall-headers", f"{hostile_receiver}/ok"
    await _alerts_for(pool, stalling, good)
    settings = replace(
        BudgetSettings(allowed_hosts=("127.0.0.1",)),
        timeout_seconds=1,
        backoff_base_seconds=600,
        backoff_max_seconds=600,
    )
    dispatcher = _dispatcher(pool, settings)
    try:
        # The round is over once the attempt's 1 s has run out (20 s: a slow machine).
        assert await asyncio.wait_for(dispatcher.deliver_due(), 20) == 2
    finally:
        await dispatcher.client.aclose()
    rows = {
        r["webhook_url"]: r
        for r in await db.fetch("SELECT webhook_url, delivered_at, last_error FROM alert_outbox")
    }
    assert rows[good]["delivered_at"] is not None
    assert rows[stalling]["delivered_at"] is None
    assert rows[stalling]["last_error"] == "timed out: no answer within 1 s"


async def test_a_2xx_answer_is_a_delivery_however_long_its_body_goes_on(
    pool: asyncpg.Pool, db: asyncpg.Connection, hostile_receiver: str
) -> None:
    await _alerts_for(pool, f"{hostile_receiver}/endless-body")
    settings = replace(BudgetSettings(allowed_hosts=("127.0.0.1",)), timeout_seconds=1)
    dispatcher = _dispatcher(pool, settings)
    try:
        assert await asyncio.wait_for(dispatcher.deliver_due(), 20) == 1
    finally:
        await dispatcher.client.aclose()
    # The status said the receiver has it; the body is never read (nor held in memory).
    row = await db.fetchrow("SELECT delivered_at, last_error FROM alert_outbox")
    assert row is not None
    delivered_at, last_error = row
    assert delivered_at is not None and last_error is None


async def test_a_receiver_answering_410_gone_is_not_retried_and_its_delivery_is_dead(
    pool: asyncpg.Pool, db: asyncpg.Connection, hostile_receiver: str
) -> None:
    # Standard Webhooks: 410 Gone says the receiver wants no more webhooks from this
    # sender, unlike a 500 or a timeout; a window of hours of retries would ignore it.
    await _alerts_for(pool, f"{hostile_receiver}/gone", f"{hostile_receiver}/ok")
    settings = replace(
        BudgetSettings(allowed_hosts=("127.0.0.1",)),
        retry_window_seconds=3 * 24 * 3600,
        backoff_base_seconds=0,
        backoff_max_seconds=0,
    )
    dispatcher = _dispatcher(pool, settings)
    try:
        assert await dispatcher.deliver_due() == 2
        assert await dispatcher.deliver_due() == 0  # due again at once, were it retried
    finally:
        await dispatcher.client.aclose()
    rows = {
        r["webhook_url"].rsplit("/", 1)[1]: r
        for r in await db.fetch(
            "SELECT webhook_url, attempts, last_error, dead_at, delivered_at FROM alert_outbox"
        )
    }
    gone, ok = rows["gone"], rows["ok"]
    assert (gone["attempts"], gone["delivered_at"]) == (1, None)
    assert gone["dead_at"] is not None
    assert gone["last_error"].startswith("HTTP 410")
    assert ok["delivered_at"] is not None


async def test_retries_and_redeliveries_go_to_the_webhook_the_budget_has_now(
    pool: asyncpg.Pool, db: asyncpg.Connection, hostile_receiver: str
) -> None:
    # An operator whose receiver fails fixes the budget's webhook_url: the retries (and a
    # redelivery of a dead alert) must go there, signed with the budget's secret as now,
    # not to the URL the alert was raised with.
    await _alert_for(pool, f"{hostile_receiver}/broken")
    budget_id = await db.fetchval("SELECT id FROM budgets")
    settings = replace(
        BudgetSettings(allowed_hosts=("127.0.0.1",)),
        retry_window_seconds=0,  # one attempt, then dead: the redelivery path
        backoff_base_seconds=0,
        backoff_max_seconds=0,
    )
    dispatcher = _dispatcher(pool, settings)
    try:
        assert await dispatcher.deliver_due() == 1
        assert await db.fetchval("SELECT dead_at IS NOT NULL FROM alert_outbox")
        async with pool.acquire() as conn:
            await update_budget(
                conn,
                budget_id,
                BudgetChanges(webhook_url=f"{hostile_receiver}/fixed"),
                datetime.now(UTC),
            )
            alert_id = str(await conn.fetchval("SELECT alert_id FROM alert_outbox"))
            await redeliver(conn, alert_id, 3600)
        assert await dispatcher.deliver_due() == 1
    finally:
        await dispatcher.client.aclose()
    row = await db.fetchrow("SELECT delivered_at, last_error FROM alert_outbox")
    assert row is not None
    delivered_at, last_error = row
    assert delivered_at is not None and last_error is None
