"""An endpoint gets its webhooks one at a time and in the order they were raised: the 50 %
alert before the 100 % one, even when the 50 % one fails at first and is retried, and none
of them twice.

The receiver is a real HTTP server on loopback that records when each request arrives
and how many were open at once. It answers each after a short pause (the receiver's own
work; it gives requests sent side by side the time to overlap), and answers 503 to the
first attempt of the lowest threshold.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from decimal import Decimal

import asyncpg
import pytest
from standardwebhooks.webhooks import Webhook

from service.budgets.delivery import Dispatcher, make_webhook_client
from service.budgets.service import create_budget
from service.catalog.service import CatalogCache
from service.db import create_pool
from service.recording.service import record_batch
from service.settings import BudgetSettings, DatabaseSettings
from tests.support.budgets import watched_global_budget
from tests.support.events import usage_event
from tests.support.waiting import wait_until

pytestmark = pytest.mark.asyncio

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
THRESHOLDS = [Decimal(n) / 10 for n in range(1, 11)]  # 0.1 … 1.0
ANSWER_PAUSE = 0.05


@dataclass
class Receiver:
    url: str = ""
    arrivals: list[tuple[str, float]] = field(default_factory=list)
    """(webhook-id, threshold) of each request, in the order they arrived."""
    accepted: list[str] = field(default_factory=list)
    """The webhook-ids answered 2xx."""
    open_now: int = 0
    most_open: int = 0
    failed_once: bool = False


async def _serve(
    receiver: Receiver, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
        headers = {
            name.strip().lower(): value.strip()
            for name, _, value in (
                line.decode().partition(":") for line in head.split(b"\r\n")[1:] if line
            )
        }
        body = await reader.readexactly(int(headers["content-length"]))
        receiver.open_now += 1
        receiver.most_open = max(receiver.most_open, receiver.open_now)
        # A forged or corrupted request is no delivery: verify it as a receiver would.
        Webhook(SECRET).verify(body, headers)
        threshold = json.loads(body)["data"]["threshold"]
        receiver.arrivals.append((headers["webhook-id"], threshold))
        await asyncio.sleep(ANSWER_PAUSE)  # the receiver's work, not a synchronisation
        receiver.open_now -= 1
        if threshold == 0.1 and not receiver.failed_once:
            receiver.failed_once = True
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n")
        else:
            receiver.accepted.append(headers["webhook-id"])
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        writer.close()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()
    server = await asyncio.start_server(lambda r, w: _serve(found, r, w), "127.0.0.1", 0)
    found.url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hooks"
    try:
        yield found
    finally:
        server.close()


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, DatabaseSettings(pool_min_size=1, pool_max_size=8))
    yield pool
    await pool.close()


@pytest.mark.parametrize("replicas", [1, 3])
async def test_an_endpoint_gets_its_alerts_one_at_a_time_in_order_through_a_retry(
    pool: asyncpg.Pool, db: asyncpg.Connection, receiver: Receiver, replicas: int
) -> None:
    # With three dispatchers sharing the outbox (three LUC processes), none claims an
    # alert while another still delivers the one before it, nor one another holds.
    async with pool.acquire() as conn:
        # 0.0003 USD, the default event's cost: one event crosses every threshold at once.
        await create_budget(conn, watched_global_budget("0.0003", THRESHOLDS, receiver.url, SECRET))
        await record_batch(conn, CatalogCache(), [usage_event("e1")])
    assert await db.fetchval("SELECT count(*) FROM alert_outbox") == 10

    settings = replace(
        BudgetSettings(allowed_hosts=("127.0.0.1",)),
        backoff_base_seconds=0,  # the retry is due at once: only the order holds it back
        backoff_max_seconds=0,
        poll_seconds=0.05,
    )
    dispatchers = [
        Dispatcher(pool, settings, make_webhook_client(settings)) for _ in range(replicas)
    ]
    running = [asyncio.create_task(d.run()) for d in dispatchers]
    try:
        await wait_until(lambda: len(receiver.accepted) >= 10, 60, "ten deliveries")
        await wait_until(
            lambda: db.fetchval(
                "SELECT count(*) = 10 FROM alert_outbox WHERE delivered_at IS NOT NULL"
            ),
            30,
            "the deliveries recorded",
        )
    finally:
        for dispatcher in dispatchers:
            dispatcher.stop()
        await asyncio.gather(*running)
        for dispatcher in dispatchers:
            await dispatcher.client.aclose()

    assert receiver.most_open == 1
    # 0.1 twice (its 503, then its retry), then each threshold once, lowest first.
    assert [t for _, t in receiver.arrivals] == [0.1] + [float(t) for t in THRESHOLDS]
    assert len(set(receiver.accepted)) == len(receiver.accepted) == 10  # none twice
    assert receiver.arrivals[0][0] == receiver.arrivals[1][0]  # a retry keeps its id
