"""The real ``openai`` SDK, with its default retries (two, on any 5xx, 408 or 429), calling
LUC's proxy: a failed call that a provider was (or may have been) paid for carries
``x-should-retry: false``, so the SDK does not buy it again; one that is safe to retry
does not. Upstream hits are counted on the fake (or scripted) provider."""

from __future__ import annotations

from typing import Any

import asyncpg
import openai
import pytest
from litestar.testing import AsyncTestClient
from openai.types.chat import ChatCompletionMessageParam

from service.auth.keys import create_key
from tests.support.fake_openrouter import BrokenAnswer, FakeOpenRouter, failure
from tests.support.ledger_truth import ledger
from tests.support.scripted_http import CLOSE, Scripted
from tests.support.waiting import proxied_usage_recorded

pytestmark = pytest.mark.asyncio

FLASH = "google/gemini-3.0-flash"
STORY: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Tell me a story"}]
BODY = {"model": FLASH, "messages": STORY}
ATTRIBUTION = {"X-LUC-Job": "job-r", "X-LUC-Agent": "ORACLE"}


async def _sdk(client: AsyncTestClient[Any], db: asyncpg.Connection) -> openai.AsyncOpenAI:
    """An SDK as shipped (``max_retries`` 2), over the app's test client."""
    _, key = await create_key(db, "sdk-retries", "ingest")
    return openai.AsyncOpenAI(
        base_url=f"{client.base_url}/v1",
        api_key=key,
        default_headers=ATTRIBUTION,
        # The SDK types its own httpx2.AsyncClient; the test client (an httpx.AsyncClient)
        # has the methods it calls.
        http_client=client,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
async def test_the_sdk_does_not_retry_a_call_whose_attempts_reached_the_provider(
    relayed: tuple[Scripted, AsyncTestClient[Any]], db: asyncpg.Connection, stream: bool
) -> None:
    upstream, client = relayed
    for _ in range(3):  # LUC's own try and 2 retries: each request read, then hung up on
        upstream.answer(CLOSE)
    sdk = await _sdk(client, db)

    with pytest.raises(openai.InternalServerError) as raised:
        await sdk.chat.completions.create(model=FLASH, messages=STORY, stream=stream)

    assert raised.value.status_code == 502
    assert raised.value.response.headers["x-should-retry"] == "false"
    # LUC's three attempts, each metered; not nine (the SDK's two retries of three each).
    assert len(upstream.seen) == 3
    await proxied_usage_recorded(client.app)
    assert len(await ledger(db)) == 3


async def test_the_sdk_does_not_retry_a_paid_answer_that_is_no_answer(
    proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    # A 200 whose body is no JSON: paid for (usage 40 in, 8 out), and a 502 to the caller.
    fake_openrouter.push(BrokenAnswer(body=b"<html>oops</html>"), BrokenAnswer(), BrokenAnswer())
    sdk = await _sdk(proxy, db)

    with pytest.raises(openai.InternalServerError) as raised:
        await sdk.chat.completions.create(model=FLASH, messages=STORY)

    assert raised.value.status_code == 502
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert len(fake_openrouter.chat_calls()) == 1
    await proxied_usage_recorded(proxy.app)
    [entry] = await ledger(db)
    assert (entry["input_tokens"], entry["output_tokens"]) == (40, 8)


async def test_a_rate_limit_and_an_unpaid_outage_leave_the_retry_to_the_sdk(
    proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    # Three 429s (LUC's try and its 2 retries), then three 503s: nothing generated.
    fake_openrouter.push(*(failure(429, retry_after=0) for _ in range(3)))
    fake_openrouter.push(*(failure(503) for _ in range(3)))

    limited = await proxy.post("/v1/chat/completions", json=BODY, headers=ATTRIBUTION)
    down = await proxy.post("/v1/chat/completions", json=BODY, headers=ATTRIBUTION)

    assert (limited.status_code, down.status_code) == (429, 502)
    assert "x-should-retry" not in limited.headers
    assert "x-should-retry" not in down.headers
    assert len(fake_openrouter.chat_calls()) == 6
    assert await ledger(db) == []


async def test_the_sdk_does_not_retry_a_provider_s_refusal_of_luc_s_own_key(
    proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    # LUC's OpenRouter key refused (401): nothing was generated, and a retry meets the same
    # key. The SDK retried the 502 twice: three refusals per call, until an operator acts.
    fake_openrouter.push(*(failure(401) for _ in range(3)))
    sdk = await _sdk(proxy, db)

    with pytest.raises(openai.InternalServerError) as raised:
        await sdk.chat.completions.create(model=FLASH, messages=STORY)

    assert raised.value.status_code == 502
    assert raised.value.response.headers["x-should-retry"] == "false"
    assert len(fake_openrouter.chat_calls()) == 1
    assert await ledger(db) == []
