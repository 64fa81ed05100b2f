"""The real ``openai`` SDK pointed at a real ``luc serve`` whose upstream is the fake
OpenRouter: answers arrive intact, each call lands in the ledger once with its cost, and
a client that hangs up mid-stream still gets the call metered once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import asyncpg
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from service.auth.keys import create_key
from tests.support.fake_openrouter import FakeOpenRouter, Reply, failure, usage
from tests.support.ledger_truth import ledger

pytestmark = [pytest.mark.asyncio, pytest.mark.slow]

FLASH = "google/gemini-3.0-flash"  # 0.10 in, 0.40 out per 1M
SONNET = "anthropic/claude-sonnet-4.5"  # 3.00 in, 15.00 out per 1M
QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France?"}
]


async def _luc(
    server_factory: Callable[..., Any], fake: FakeOpenRouter, db: asyncpg.Connection
) -> tuple[Any, str]:
    _, key = await create_key(db, "aims-gateway", "ingest")
    server = server_factory(
        OPENROUTER_API_KEY=fake.api_key,
        LUC_OPENROUTER_BASE_URL=fake.base_url,
        LUC_GATEWAY_CHAIN="openrouter",
        LUC_GATEWAY_BACKOFF_BASE_SECONDS="0.05",
        LUC_AUTH="on",
    )
    return server, key


def _sdk(server: Any, key: str, job: str, agent: str = "ACHEEVY") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=f"{server.base_url}/v1",
        api_key=key,
        default_headers={"X-LUC-Job": job, "X-LUC-Agent": agent},
        max_retries=0,
    )


async def _wait_for_entries(db: asyncpg.Connection, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        entries = await ledger(db)
        if len(entries) >= count:
            return entries
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {count} ledger entries, found {len(await ledger(db))}")


async def test_the_openai_sdk_gets_intact_answers_and_each_call_is_metered_once(
    server_factory: Callable[..., Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    server, key = await _luc(server_factory, fake_openrouter, db)
    sdk = _sdk(server, key, "job-sdk")
    story = "Paris is the capital of France. It sits on the Seine. " * 5
    fake_openrouter.push(
        Reply(text="Paris.", usage=usage(2150, 4, cached=2048, cost="0.0009804")),
        Reply(text=story, usage=usage(1200, 300, cached=200, reasoning=100, cost="0.000123")),
        failure(429, retry_after=0),  # retried by LUC, unseen by the SDK
        Reply(text="Retried.", usage=usage(10, 2, cost="0.0000018"), usage_shape=3),
    )

    answer = await sdk.chat.completions.create(model=SONNET, messages=QUESTION)
    assert answer.choices[0].message.content == "Paris."
    assert answer.id.startswith("gen-")
    assert answer.usage is not None and answer.usage.prompt_tokens == 2150

    chunks = []
    stream = await sdk.chat.completions.create(model=FLASH, messages=QUESTION, stream=True)
    async for chunk in stream:
        chunks.append(chunk)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == story
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 300

    retried = await sdk.chat.completions.create(model=FLASH, messages=QUESTION, stream=True)
    assert "".join([c.choices[0].delta.content or "" async for c in retried if c.choices]) == (
        "Retried."
    )

    entries = await _wait_for_entries(db, 3)
    assert [(e["job_id"], e["agent"], e["provider"]) for e in entries] == [
        ("job-sdk", "ACHEEVY", "openrouter")
    ] * 3
    assert entries[0]["event_id"] == answer.id
    # Sonnet: 102·3 + 2048·0.30 + 4·15 = 980.4 per 1M, what OpenRouter reported
    assert entries[0]["cost_usd"] == Decimal("0.0009804")
    assert entries[0]["provider_cost_usd"] == Decimal("0.0009804")
    # Flash: 1000·0.10 + 200·0.01 + 200·0.40 + 100·0.40 = 222 per 1M
    assert entries[1]["cost_usd"] == Decimal("0.000222")
    assert (entries[1]["reasoning_tokens"], entries[1]["cached_input_tokens"]) == (100, 200)
    # Flash: 10·0.10 + 2·0.40 = 1.8 per 1M
    assert entries[2]["cost_usd"] == Decimal("0.0000018")
    # LUC's own key went upstream, never the caller's LUC key.
    calls = fake_openrouter.chat_calls()
    assert len(calls) == 4
    assert {c.headers["authorization"] for c in calls} == {f"Bearer {fake_openrouter.api_key}"}
    await sdk.close()


async def test_a_client_that_hangs_up_mid_stream_still_has_the_call_metered_once(
    server_factory: Callable[..., Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    server, key = await _luc(server_factory, fake_openrouter, db)
    sdk = _sdk(server, key, "job-gone", agent="ByteRover")
    fake_openrouter.push(
        Reply(
            text="word " * 40,  # 67 chunks of 3 characters, 30 ms apart: ~2 s
            chunk_chars=3,
            delay=0.03,
            usage=usage(500, 50, cost="0.00007"),
        )
    )
    stream = await sdk.chat.completions.create(model=FLASH, messages=QUESTION, stream=True)
    received = 0
    async for _ in stream:
        received += 1
        if received == 3:
            break
    await stream.close()  # the client is gone; the provider is still generating

    [entry] = await _wait_for_entries(db, 1)
    # The whole generation, from the usage of the final chunk: 500·0.10 + 50·0.40 = 70 per 1M
    assert (entry["input_tokens"], entry["output_tokens"]) == (500, 50)
    assert entry["cost_usd"] == Decimal("0.00007")
    assert entry["provider_cost_usd"] == Decimal("0.00007")
    assert fake_openrouter.streams_finished == 1  # LUC read the upstream to its end
    await asyncio.sleep(0.5)
    assert len(await ledger(db)) == 1  # once
    await sdk.close()


async def test_the_sdk_raises_its_own_errors_with_luc_s_advice(
    server_factory: Callable[..., Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    server, key = await _luc(server_factory, fake_openrouter, db)
    sdk = _sdk(server, key, "job-err")
    fake_openrouter.push(failure(402), Reply(text="Once upon", error_after=4, usage=usage(9, 2)))

    with pytest.raises(openai.APIStatusError) as credits:
        await sdk.chat.completions.create(model=FLASH, messages=QUESTION)
    assert credits.value.status_code == 402
    assert "add credits" in credits.value.message

    with pytest.raises(openai.BadRequestError) as unknown:
        await sdk.chat.completions.create(model="openai/gpt-nope", messages=QUESTION)
    assert "check the model id against LUC's catalog" in unknown.value.message

    stream = await sdk.chat.completions.create(model=FLASH, messages=QUESTION, stream=True)
    with pytest.raises(openai.APIError) as broken:
        async for _ in stream:
            pass
    assert "Provider disconnected unexpectedly" in broken.value.message

    [entry] = await _wait_for_entries(db, 1)  # the tokens spent before the error
    assert (entry["input_tokens"], entry["output_tokens"]) == (9, 2)
    await sdk.close()


async def test_the_sdk_lists_and_retrieves_the_catalog_s_models_with_its_ingest_key(
    server_factory: Callable[..., Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    server, key = await _luc(server_factory, fake_openrouter, db)
    sdk = _sdk(server, key, "job-models")

    models = [m async for m in sdk.models.list()]
    assert len(models) == 10  # the AIMS catalog
    flash = next(m for m in models if m.id == FLASH)
    assert (flash.object, flash.owned_by, flash.created) == ("model", "google", 1735689600)

    # The SDK sends the id's slash encoded (/models/google%2Fgemini-3.0-flash).
    retrieved = await sdk.models.retrieve(FLASH)
    assert retrieved.id == FLASH
    assert (await sdk.models.retrieve("gemini-3.0-flash")).id == FLASH  # an alias
    with pytest.raises(openai.NotFoundError) as missing:
        await sdk.models.retrieve("openai/gpt-nope")
    assert "is not in LUC's catalog" in missing.value.message
    assert fake_openrouter.chat_calls() == []  # listing never goes upstream
    await sdk.close()
