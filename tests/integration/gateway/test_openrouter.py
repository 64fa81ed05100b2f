"""The OpenRouter client against a fake OpenRouter on loopback: answers, streams in every
real shape, errors with their advice, Retry-After, and what lands in the ledger."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

import asyncpg
import httpx
import pytest

from service.catalog.importer import fetch_openrouter_models
from service.errors import (
    AuthenticationFailedError,
    GatewayError,
    InsufficientCreditsError,
    RateLimitedError,
    UnknownModelError,
    UpstreamRejectedError,
    UpstreamUnavailableError,
)
from service.gateway.metering import Gateway
from service.gateway.models import ChatResult
from service.gateway.openrouter import OpenRouterProvider
from service.gateway.upstream import RetryPolicy
from service.pricing.openrouter import parse_models
from tests.support.fake_openrouter import FakeOpenRouter, Reply, failure, usage
from tests.support.ledger_truth import STORED_EVENT, ledger

pytestmark = pytest.mark.asyncio

# 3.00 in, 15.00 out per 1M, cache read 0.30; from 200,001 input tokens every token at 6.00 /
# 22.50, cache read 0.60
SONNET = "anthropic/claude-sonnet-4.5"
FLASH = "google/gemini-3.0-flash"  # 0.10 in, 0.40 out, 0.01 cached per 1M; defaults for the rest
HELLO = [{"role": "user", "content": "What is the capital of France?"}]


async def test_a_chat_answer_is_priced_by_the_catalog_and_lands_in_the_ledger_once(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    fake_openrouter.push(
        Reply(
            text="Paris.",
            usage=usage(2150, 4, cached=2048, cost="0.0009804"),
            provider="Amazon Bedrock",
        )
    )
    gateway = make_gateway(openrouter)

    result = await gateway.chat(model=SONNET, messages=HELLO, job_id="job-1", agent="ACHEEVY")

    # (2150 - 2048)·3 + 2048·0.30 (cache read) + 4·15 = 306 + 614.4 + 60 = 980.4 per 1M:
    # what OpenRouter billed, to the last digit
    assert result.text == "Paris."
    assert result.cost.usd == Decimal("0.0009804")
    assert result.cost.provider_usd == Decimal("0.0009804")
    assert (result.tokens.input, result.tokens.cached, result.tokens.output) == (2150, 2048, 4)
    assert result.tokens.total == 2154
    assert (result.provider, result.model) == ("openrouter", SONNET)
    assert result.generation_id.startswith("gen-")
    [entry] = await ledger(db)
    assert entry["event_id"] == result.generation_id
    assert (entry["job_id"], entry["agent"], entry["provider"]) == (
        "job-1",
        "ACHEEVY",
        "openrouter",
    )
    assert entry["cost_usd"] == Decimal("0.0009804")
    assert entry["provider_cost_usd"] == Decimal("0.0009804")
    [call] = fake_openrouter.chat_calls()
    assert call.headers["authorization"] == f"Bearer {fake_openrouter.api_key}"
    assert call.headers["http-referer"] == "https://aims.test"
    assert call.headers["x-title"] == "AIMS tests"
    assert call.body["model"] == SONNET and call.body["stream"] is False


async def test_a_long_context_call_costs_the_long_rate_in_its_result_and_on_the_ledger(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    fake_openrouter.push(
        Reply(text="A long summary.", usage=usage(250_000, 1_000, cached=50_000, reasoning=200)),
        Reply(text="A short one.", usage=usage(200_000, 1_000, cached=50_000, reasoning=200)),
    )
    gateway = make_gateway(openrouter)

    long = await gateway.chat(model=SONNET, messages=HELLO, job_id="job-l", agent="ORACLE")
    short = await gateway.chat(model=SONNET, messages=HELLO, job_id="job-l", agent="ORACLE")

    # 250,000 ≥ 200,001: 200,000·6 + 50,000·0.60 + 800·22.50 + 200·22.50 (reasoning at the
    # entry's output) = 1,200,000 + 30,000 + 18,000 + 4,500 = 1,252,500 per 1M
    assert long.cost.usd == Decimal("1.2525")
    # 200,000 < 200,001: 150,000·3 + 50,000·0.30 + 1,000·15 = 450,000 + 15,000 + 15,000
    assert short.cost.usd == Decimal("0.48")
    entries = {e["event_id"]: e for e in await ledger(db)}
    assert entries[long.generation_id]["cost_usd"] == long.cost.usd
    assert entries[short.generation_id]["cost_usd"] == short.cost.usd
    rates = {
        event_id: rate
        for event_id, rate in await db.fetch(
            "SELECT event_id, long_context_from FROM ledger_entries"
        )
    }
    assert rates == {long.generation_id: 200_001, short.generation_id: None}


async def test_an_alias_goes_upstream_as_its_catalog_id_and_leading_blank_lines_parse(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
) -> None:
    fake_openrouter.push(Reply(text="Hi", leading_newlines=True))
    result = await make_gateway(openrouter).chat(
        model="gemini-3.0-flash", messages=HELLO, job_id="j", agent="a"
    )
    assert result.text == "Hi" and result.model == FLASH
    assert fake_openrouter.chat_calls()[0].body["model"] == FLASH


@pytest.mark.parametrize("shape", [1, 2, 3])
async def test_a_stream_takes_its_usage_from_the_final_chunk_in_each_real_shape(
    shape: int,
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    text = "The capital of France is Paris."
    fake_openrouter.push(
        Reply(
            text=text,
            usage=usage(1200, 300, cached=200, reasoning=100, cost="0.000123"),
            usage_shape=shape,
            keepalives=2,  # ": OPENROUTER PROCESSING" before the first token
        )
    )
    pieces: list[str] = []
    result: ChatResult | None = None
    async for item in make_gateway(openrouter).stream(
        model=FLASH, messages=HELLO, job_id="job-s", agent="ORACLE"
    ):
        if isinstance(item, str):
            pieces.append(item)
        else:
            result = item
    assert "".join(pieces) == text and len(pieces) > 1
    assert result is not None and result.text == text
    # 1000·0.10 + 200·0.01 (cached) + 200·0.40 + 100·0.40 (reasoning) = 222 per 1M
    assert result.cost.usd == Decimal("0.000222")
    assert (result.tokens.reasoning, result.tokens.total) == (100, 1500)
    [entry] = await ledger(db)
    assert (entry["input_tokens"], entry["cached_input_tokens"]) == (1200, 200)
    assert (entry["output_tokens"], entry["reasoning_tokens"]) == (300, 100)
    assert entry["cost_usd"] == Decimal("0.000222")
    assert entry["provider_cost_usd"] == Decimal("0.000123")
    assert fake_openrouter.chat_calls()[0].body["stream"] is True


async def test_streams_one_after_another_share_one_upstream_connection(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
) -> None:
    # A stream read to its [DONE] leaves its connection to the next call, as a plain
    # answer does: no new TCP (and, with a real provider, TLS) handshake per stream.
    gateway = make_gateway(openrouter)
    for _ in range(3):
        async for _piece in gateway.stream(
            model=FLASH, messages=HELLO, job_id="job-s", agent="ORACLE"
        ):
            pass
    await gateway.chat(model=FLASH, messages=HELLO, job_id="job-s", agent="ORACLE")
    connections = {call.client for call in fake_openrouter.chat_calls()}
    assert len(fake_openrouter.chat_calls()) == 4
    assert len(connections) == 1, connections


async def test_an_error_after_tokens_bills_them_from_the_generation_record_and_then_raises(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    fake_openrouter.push(
        Reply(text="Once upon a time", error_after=9, usage=usage(100, 20, cost="0.00002"))
    )
    fake_openrouter.generation_misses = 1  # the record is not there on the first look-up
    pieces: list[str] = []
    with pytest.raises(UpstreamUnavailableError) as raised:
        async for item in make_gateway(openrouter).stream(
            model=FLASH, messages=HELLO, job_id="job-e", agent="ACHEEVY"
        ):
            assert isinstance(item, str)
            pieces.append(item)
    assert "".join(pieces) == "Once upon"
    assert "Provider disconnected unexpectedly" in raised.value.message
    [entry] = await ledger(db)
    # From GET /generation: 100·0.10 + 20·0.40 = 18 per 1M
    assert (entry["input_tokens"], entry["output_tokens"]) == (100, 20)
    assert entry["cost_usd"] == Decimal("0.000018")
    row = await db.fetchrow(STORED_EVENT, entry["event_id"])
    assert row is not None
    status, attributes = row
    assert status == "error"
    assert attributes["usage_source"] == "generation"


@pytest.mark.parametrize(
    ("status", "error", "advice"),
    [
        (401, AuthenticationFailedError, "check OPENROUTER_API_KEY"),
        (402, InsufficientCreditsError, "add credits"),
        (400, UnknownModelError, "check the model id against LUC's catalog"),
        (429, RateLimitedError, "less concurrency"),
        (502, UpstreamUnavailableError, "down or overloaded"),
        (503, UpstreamUnavailableError, "down or overloaded"),
        (403, UpstreamRejectedError, "fix the request"),
    ],
)
async def test_each_provider_error_is_typed_and_carries_its_advice(
    status: int,
    error: type[GatewayError],
    advice: str,
    http: httpx.AsyncClient,
    make_gateway: Callable[..., Gateway],
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    no_retry = RetryPolicy(max_retries=0)
    provider = OpenRouterProvider(http, fake_openrouter.base_url, fake_openrouter.api_key, no_retry)
    fake_openrouter.push(failure(status, retry_after=7 if status == 429 else None))
    with pytest.raises(error) as raised:
        await make_gateway(provider).chat(model=FLASH, messages=HELLO, job_id="j", agent="a")
    assert advice in raised.value.message
    assert raised.value.upstream_status == status and raised.value.provider == "openrouter"
    if status == 429:
        assert raised.value.retry_after == 7
    assert await ledger(db) == []  # nothing was generated, nothing is billed


async def test_a_provider_echoing_luc_s_key_in_its_error_never_hands_it_on(
    http: httpx.AsyncClient,
    make_gateway: Callable[..., Gateway],
    fake_openrouter: FakeOpenRouter,
) -> None:
    """SPEC §10: LUC's own upstream keys never leave the server. A provider's error text
    is relayed (the proxy's answer, the logs): one naming the key it was sent handed it to
    every caller."""
    key = fake_openrouter.api_key
    provider = OpenRouterProvider(http, fake_openrouter.base_url, key, RetryPolicy(max_retries=0))
    fake_openrouter.push(failure(401, f"Invalid key {key} (disabled)"))
    with pytest.raises(AuthenticationFailedError) as raised:
        await make_gateway(provider).chat(model=FLASH, messages=HELLO, job_id="j", agent="a")
    assert key not in raised.value.message and key not in raised.value.detail
    assert "Invalid key [LUC's key, redacted] (disabled)" in raised.value.message


async def test_a_rate_limit_is_retried_after_the_retry_after_delay(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    fake_openrouter.push(failure(429, retry_after=1), Reply(text="after the wait"))
    started = time.monotonic()
    result = await make_gateway(openrouter).chat(model=FLASH, messages=HELLO, job_id="j", agent="a")
    assert result.text == "after the wait"
    first, second = fake_openrouter.chat_calls()
    assert second.at - first.at >= 1.0
    assert time.monotonic() - started >= 1.0
    assert len(await ledger(db)) == 1


async def test_a_model_outside_the_catalog_is_refused_before_any_call(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
) -> None:
    with pytest.raises(UnknownModelError) as raised:
        await make_gateway(openrouter).chat(
            model="openai/gpt-nope", messages=HELLO, job_id="j", agent="a"
        )
    assert "check the model id against LUC's catalog" in raised.value.message
    assert fake_openrouter.chat_calls() == []


async def test_the_fake_models_list_reads_as_openrouter_s_through_the_catalog_importer(
    http: httpx.AsyncClient, fake_openrouter: FakeOpenRouter
) -> None:
    payload = await fetch_openrouter_models(http, fake_openrouter.base_url)
    imported = {m.model_id: m for m in parse_models(payload, {}).models}
    assert imported[FLASH].input == Decimal("0.1") and imported[FLASH].output == Decimal("0.4")
    assert imported[SONNET].cache_read == Decimal("0.3")
