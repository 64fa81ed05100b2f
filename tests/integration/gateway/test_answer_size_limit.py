"""A provider whose answer has no end (or no reasonable one): LUC keeps at most
``LUC_GATEWAY_MAX_ANSWER_BYTES`` of a body, or of one stream event, then cuts the call,
answers 502 (a stream: an error event coded 502) and meters it, since it reached the
provider. Here the limit is 1,000 bytes; the upstream is a scripted HTTP server on a
thread of its own, the ledger the test's PostgreSQL. The prompt "Tell me a story" is 15
characters: 4 tokens by LUC's estimate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from tests.support.ledger_truth import STORED_EVENT, ledger
from tests.support.relayed import relayed_to_scripted
from tests.support.scripted_http import Forever, Scripted
from tests.support.waiting import proxied_usage_recorded

pytestmark = pytest.mark.asyncio

FLASH = "google/gemini-3.0-flash"  # 0.10 in, 0.40 out per 1M
BODY = {"model": FLASH, "messages": [{"role": "user", "content": "Tell me a story"}]}
ATTRIBUTION = {"X-LUC-Job": "job-big", "X-LUC-Agent": "ORACLE"}
LIMIT_MESSAGE = "larger than LUC's limit of 1000 bytes (LUC_GATEWAY_MAX_ANSWER_BYTES)"
# No length, no end: the body is read until the connection closes, which it never does
# (within the test: 20 s).
ENDLESS_JSON = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n"
ENDLESS_SSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n\r\n"


@pytest.fixture
async def bounded(database_url: str) -> AsyncIterator[tuple[Scripted, AsyncTestClient[Any]]]:
    async with relayed_to_scripted(database_url, LUC_GATEWAY_MAX_ANSWER_BYTES="1000") as pair:
        yield pair


async def _metered(db: asyncpg.Connection) -> tuple[Any, ...]:
    [entry] = await ledger(db)
    row = await db.fetchrow(STORED_EVENT, entry["event_id"])
    assert row is not None
    status, attributes = row
    return (
        entry["input_tokens"],
        entry["output_tokens"],
        entry["cost_usd"],
        status,
        attributes["usage_source"],
        LIMIT_MESSAGE in attributes["error"],
    )


async def test_an_answer_body_without_end_is_cut_at_the_limit_answered_502_and_metered(
    bounded: tuple[Scripted, AsyncTestClient[Any]], db: asyncpg.Connection
) -> None:
    upstream, client = bounded
    upstream.answer(ENDLESS_JSON, b"{", Forever(b" " * 256, every=0.001, until=20))

    async with asyncio.timeout(10):  # before: read for 20 s, all of it kept
        response = await client.post("/v1/chat/completions", json=BODY, headers=ATTRIBUTION)

    assert response.status_code == 502, response.text
    assert response.headers["x-should-retry"] == "false"
    assert LIMIT_MESSAGE in response.json()["error"]["message"]
    assert len(upstream.seen) == 1  # not asked again: the same request, the same answer
    await proxied_usage_recorded(client.app)
    # Paid for, nothing known but the prompt: 4·0.10 per 1M.
    assert await _metered(db) == (4, 0, Decimal("0.0000004"), "error", "estimate", True)


async def test_a_stream_event_without_end_is_cut_at_the_limit_and_metered(
    bounded: tuple[Scripted, AsyncTestClient[Any]], db: asyncpg.Connection
) -> None:
    upstream, client = bounded
    upstream.answer(ENDLESS_SSE, b"data: ", Forever(b"x" * 256, every=0.001, until=20))

    async with asyncio.timeout(10):
        response = await client.post(
            "/v1/chat/completions", json={**BODY, "stream": True}, headers=ATTRIBUTION
        )

    assert response.status_code == 200  # the stream had begun
    last = response.text.strip().split("\n\n")[-1]
    error = msgspec.json.decode(last.removeprefix("data: "))["error"]
    assert error["code"] == 502
    assert LIMIT_MESSAGE in error["message"]
    await proxied_usage_recorded(client.app)
    assert await _metered(db) == (4, 0, Decimal("0.0000004"), "error", "estimate", True)
