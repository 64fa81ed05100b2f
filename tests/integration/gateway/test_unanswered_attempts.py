"""Attempts that a provider never answered. One whose request went out whole may have been
run, and billed, by the provider all the same (it answers, or bills, after LUC stopped
waiting), so each such attempt is metered on its own: status ``error``, ``attributes.outcome``
``timeout`` or ``connection_lost``, its prompt estimated (``usage_source`` ``estimate``) and
no output. One whose request never left (no connection) cannot have been, and is not.

The upstream is a scripted HTTP server on loopback; the ledger is the test's PostgreSQL.
The prompt "Tell me a story" is 15 characters: 4 tokens by LUC's estimate.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from service.errors import UpstreamUnavailableError
from service.gateway.chain import upstream_client
from service.gateway.metering import Gateway
from service.gateway.models import CallContext
from service.gateway.stub import StubProvider
from tests.support.budgets import hard_budget
from tests.support.fake_openrouter import openrouter_at
from tests.support.ledger_truth import STORED_EVENT, ledger
from tests.support.ports import closed_port
from tests.support.scripted_http import CLOSE, Scripted, scripted_server

pytestmark = pytest.mark.asyncio

FLASH = "google/gemini-3.0-flash"  # 0.10 in, 0.40 out per 1M
STORY = [{"role": "user", "content": "Tell me a story"}]
CONTEXT = CallContext("job-t", "ORACLE", {})
# The reservation of a call: 4·0.10 + 100·0.40 = 40.4 per 1M
ESTIMATE = Decimal("0.0000404")
RESERVATIONS = """
SELECT amount_usd, settled_at IS NOT NULL AS settled, expires_at > now() AS holding
FROM budget_reservations WHERE job_id = $1 ORDER BY created_at
"""


@pytest.fixture
async def upstream() -> AsyncIterator[Scripted]:
    async with scripted_server() as server:
        yield server


@pytest.fixture
async def impatient() -> AsyncIterator[Any]:
    """A client that waits 0.3 s for an answer's first bytes (``LUC_GATEWAY_TIMEOUT_SECONDS``)."""
    client = upstream_client(timeout_seconds=0.3)
    yield client
    await client.aclose()


async def _unanswered(db: asyncpg.Connection) -> list[tuple[Any, ...]]:
    """The metered attempts that got no answer: (provider, input, output, status, outcome,
    usage source), in the order they were recorded."""
    rows = []
    for entry in await ledger(db):
        row = await db.fetchrow(STORED_EVENT, entry["event_id"])
        assert row is not None
        status, attributes = row
        if "outcome" in attributes:
            rows.append(
                (
                    entry["provider"],
                    entry["input_tokens"],
                    entry["output_tokens"],
                    entry["cost_usd"],
                    status,
                    attributes["outcome"],
                    attributes["usage_source"],
                )
            )
    return rows


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_each_attempt_sent_whole_that_times_out_is_metered_and_the_chain_moves_on(
    make_gateway: Callable[..., Gateway],
    impatient: Any,
    upstream: Scripted,
    db: asyncpg.Connection,
    stream: bool,
) -> None:
    await hard_budget(db, "job", "job-t", "1.00")
    silent = asyncio.Event()  # the provider reads each request and never answers
    for _ in range(3):  # the first try and its 2 retries (FAST_RETRY)
        upstream.answer(silent)
    gateway = make_gateway(openrouter_at(impatient, upstream.url), StubProvider())
    request = gateway.request(messages=STORY, model=FLASH, max_tokens=100)

    try:
        if stream:
            handle = await gateway.open_stream(request, CONTEXT)
            async for _ in handle.events():
                pass
            result = await handle.result()
        else:
            result, _ = await gateway.complete(request, CONTEXT)
    finally:
        silent.set()

    assert len(upstream.seen) == 3
    assert result.provider == "stub"
    # Each of the three was sent whole: three events, each on its prompt alone,
    # 4·0.10 per 1M = 0.0000004 USD.
    attempt = ("openrouter", 4, 0, Decimal("0.0000004"), "error", "timeout", "estimate")
    assert await _unanswered(db) == [attempt, attempt, attempt]
    entries = await ledger(db)
    assert [e["provider"] for e in entries] == ["openrouter"] * 3 + ["stub"]
    assert len({e["event_id"] for e in entries}) == 4  # an idempotency key each
    # The one reservation is settled once, by the answer's (the stub's) event.
    assert [tuple(r) for r in await db.fetch(RESERVATIONS, "job-t")] == [(ESTIMATE, True, True)]


async def test_an_attempt_whose_connection_breaks_after_the_request_is_metered(
    make_gateway: Callable[..., Gateway],
    impatient: Any,
    upstream: Scripted,
    db: asyncpg.Connection,
) -> None:
    for _ in range(3):  # the provider reads the request and hangs up without a word
        upstream.answer(CLOSE)
    gateway = make_gateway(openrouter_at(impatient, upstream.url))
    request = gateway.request(messages=STORY, model=FLASH, max_tokens=100)

    with pytest.raises(UpstreamUnavailableError) as raised:
        await gateway.complete(request, CONTEXT)

    assert "after the request was sent" in raised.value.message
    assert raised.value.paid
    attempt = ("openrouter", 4, 0, Decimal("0.0000004"), "error", "connection_lost", "estimate")
    assert await _unanswered(db) == [attempt, attempt, attempt]


async def test_an_attempt_that_never_reached_the_provider_is_not_metered(
    make_gateway: Callable[..., Gateway], impatient: Any, db: asyncpg.Connection
) -> None:
    await hard_budget(db, "job", "job-t", "1.00")
    with closed_port() as port:
        gateway = make_gateway(openrouter_at(impatient, f"http://127.0.0.1:{port}"))
        request = gateway.request(messages=STORY, model=FLASH, max_tokens=100)
        with pytest.raises(UpstreamUnavailableError) as raised:
            await gateway.complete(request, CONTEXT)

    assert "cannot reach" in raised.value.message
    assert not raised.value.paid
    assert await ledger(db) == []
    # Released at once: nothing was spent.
    [(amount, settled, holding)] = await db.fetch(RESERVATIONS, "job-t")
    assert (amount, settled, holding) == (ESTIMATE, False, False)


async def test_an_unreachable_provider_is_named_without_the_credentials_in_its_address(
    make_gateway: Callable[..., Gateway], impatient: Any
) -> None:
    """An address's user, password and query (a proxy's credentials, a key) never leave the
    server (SPEC §10): the message reaches the proxy's callers and the log."""
    with closed_port() as port:
        address = f"http://luc:SECRETPW9@127.0.0.1:{port}/api/v1?key=SECRETKEY"
        gateway = make_gateway(openrouter_at(impatient, address))
        request = gateway.request(messages=STORY, model=FLASH, max_tokens=100)
        with pytest.raises(UpstreamUnavailableError) as raised:
            await gateway.complete(request, CONTEXT)

    assert f"cannot reach http://127.0.0.1:{port}/api/v1 (" in raised.value.message
    assert "SECRET" not in raised.value.message
