"""The proxy as OpenAI-compatible tools use it, against the fake OpenRouter on loopback:
errors in OpenAI's shape for whatever fails, and nothing on the ledger for an upstream
call that was never answered."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import asyncpg
import openai
import pytest
from litestar.testing import AsyncTestClient
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolUnionParam

from service.app import create_app
from service.auth.keys import create_key
from tests.support.budgets import hard_budget
from tests.support.fake_openrouter import Failure, FakeOpenRouter, Reply, usage
from tests.support.fake_vertex import FakeVertex, vertex_usage
from tests.support.ledger_truth import STORED_EVENTS, TOKEN_FIELDS, ledger
from tests.support.scripted_http import Scripted, ok
from tests.support.settings import settings_for
from tests.support.waiting import proxied_usage_recorded, wait_until

pytestmark = pytest.mark.asyncio

FLASH = "google/gemini-3.0-flash"  # 0.10 in, 0.40 out per 1M
STORY: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Tell me a story"}]
BODY = {"model": FLASH, "messages": STORY}

HOLDING = """
SELECT count(*) FROM budget_reservations
WHERE job_id = $1 AND settled_at IS NULL AND expires_at > now()
"""


def _moved() -> Failure:
    """What OpenRouter (or a proxy before it) answers a base URL it moved elsewhere."""
    return Failure(308, "moved", {"Location": "https://openrouter.ai/api/v1/chat/completions"})


@pytest.mark.parametrize("stream", [False, True])
async def test_an_upstream_redirect_is_no_answer_and_nothing_is_metered(
    proxy: AsyncTestClient[Any],
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
    stream: bool,
) -> None:
    """Before: a 3xx counted as an answer. Not streamed, it was metered as a failed paid
    call (the prompt's 3 tokens at list price, status error) and the client was told to
    "fix the request"; streamed, the client got a 200 stream that broke off."""
    await hard_budget(db, "job", "job-moved", "1")
    attribution = {"X-LUC-Job": "job-moved", "X-LUC-Agent": "ORACLE"}
    fake_openrouter.push(_moved())
    response = await proxy.post(
        "/v1/chat/completions", json={**BODY, "stream": stream}, headers=attribution
    )
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("api_error", "upstream_unavailable")
    assert "redirect to 'https://openrouter.ai/api/v1/chat/completions'" in error["message"]
    assert "LUC_OPENROUTER_BASE_URL" in error["message"]
    assert len(fake_openrouter.chat_calls()) == 1  # the same URL redirects again: no retry
    # Nothing was generated: nothing on the ledger, and the reservation is free at once.
    await proxied_usage_recorded(proxy.app)
    assert await ledger(db) == []
    assert await db.fetchval(HOLDING, "job-moved") == 0

    # The next call, answered, is metered as usual.
    fake_openrouter.push(Reply(text="Once.", usage=usage(100, 20, cost="0.000018")))
    answered = await proxy.post("/v1/chat/completions", json=BODY, headers=attribution)
    assert answered.status_code == 200, answered.text
    await proxied_usage_recorded(proxy.app)
    [entry] = await ledger(db)
    assert (entry["input_tokens"], entry["output_tokens"]) == (100, 20)


@pytest.mark.parametrize("options", ["yes", ["include_usage"], 1, None])
async def test_a_stream_to_vertex_with_stream_options_that_are_no_object_is_answered_and_metered(
    database_url: str, fake_vertex: FakeVertex, db: asyncpg.Connection, options: Any
) -> None:
    """Before: LUC's Vertex client merged the caller's ``stream_options`` into its own
    ``include_usage`` as a mapping, and a string or a list raised a TypeError: a 500
    before any call. Vertex gets ``include_usage`` alone (null was already so)."""
    settings = settings_for(
        database_url,
        LUC_VERTEX_BASE_URL=fake_vertex.base_url,
        LUC_VERTEX_ACCESS_TOKEN=fake_vertex.api_key,
        LUC_GATEWAY_CHAIN="vertex",
    )
    fake_vertex.push(Reply(text="Once.", usage=vertex_usage(100, 20)))
    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.post(
            "/v1/chat/completions",
            json={**BODY, "stream": True, "stream_options": options},
            headers={"X-LUC-Job": "job-vertex", "X-LUC-Agent": "ORACLE"},
        )
        assert response.status_code == 200, response.text
        assert response.text.endswith("data: [DONE]\n\n")
        await proxied_usage_recorded(client.app)
    [call] = fake_vertex.chat_calls()
    assert call.body["stream_options"] == {"include_usage": True}
    [entry] = await ledger(db)
    # Vertex sends no cost: 100·0.10 + 20·0.40 = 18 per 1M, at list price.
    assert (entry["provider"], entry["input_tokens"], entry["output_tokens"]) == (
        "vertex",
        100,
        20,
    )
    assert entry["cost_usd"] == Decimal("0.000018")


@pytest.mark.parametrize(
    "bounds",
    [
        {"max_completion_tokens": 1000},
        {"max_tokens": 1000},
        {"max_completion_tokens": 10, "max_tokens": 1000},
        {"max_completion_tokens": 1000, "max_tokens": 10},
    ],
)
async def test_a_hard_budget_reserves_for_the_larger_of_max_tokens_and_max_completion_tokens(
    proxy: AsyncTestClient[Any],
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
    bounds: dict[str, int],
) -> None:
    """Both go upstream untouched, and which one a provider honours is its own affair.
    Before: with both, the reservation held max_completion_tokens only, so a call bounded
    by 10 there and 1000 in max_tokens was admitted at 10 tokens' price and could spend
    100 times what the budget had room for."""
    # 4 prompt tokens (15 characters) and 1000 output: 4·0.10 + 1000·0.40 = 400.4 per 1M,
    # over the 0.0004 left; with 10 output tokens it would fit.
    await hard_budget(db, "job", "job-bound", "0.0004")
    response = await proxy.post(
        "/v1/chat/completions",
        json={**BODY, **bounds},
        headers={"X-LUC-Job": "job-bound", "X-LUC-Agent": "ORACLE"},
    )
    assert response.status_code == 402, response.text
    assert response.json()["error"]["code"] == "budget_exceeded"
    assert fake_openrouter.chat_calls() == []


SONNET = "anthropic/claude-sonnet-4.5"


async def _until_entries(db: asyncpg.Connection, count: int) -> list[dict[str, Any]]:
    async def arrived() -> bool:
        return len(await ledger(db)) >= count

    await wait_until(arrived, 30, f"{count} ledger entries")
    return await ledger(db)


@pytest.mark.slow
async def test_the_openai_sdk_s_calls_go_upstream_untouched_and_are_metered_by_token_class(
    server_factory: Callable[..., Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    """The real SDK, sync and async, against ``luc serve``: tools, response_format, n,
    max_completion_tokens and fields LUC has never heard of reach the provider as sent;
    streams with and without stream_options; unicode intact; every token class and the
    provider's cost (a JSON number in exponent form too) on the ledger, exactly."""
    _, key = await create_key(db, "aims-gateway", "ingest")
    server = server_factory(
        OPENROUTER_API_KEY=fake_openrouter.api_key,
        LUC_OPENROUTER_BASE_URL=fake_openrouter.base_url,
        LUC_GATEWAY_CHAIN="openrouter",
        LUC_AUTH="on",
    )
    headers = {"X-LUC-Job": "job-sdk", "X-LUC-Agent": "Boomer_Ang", "X-LUC-Customer": "acme"}
    text = "Ça coûte 1 € — 東京 😀."
    fake_openrouter.push(
        # Long context (300,000 ≥ 200,001 prompt tokens): every token at Sonnet's long rate.
        Reply(
            text=text,
            usage=usage(
                300_000,
                400,
                cached=100_000,
                cache_write=50_000,
                reasoning=100,
                cost="1.3440000000000000001",
            ),
        ),
        Reply(text=text, usage=usage(20, 7, cost="5E-7")),
        Reply(text=text, usage=usage(12, 3, cost="0.0000036"), usage_shape=2),
    )
    tools: list[ChatCompletionToolUnionParam] = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Wetter für eine Stadt",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    unknown = {"x_trace": {"nested": ["é😀", 1.5, None, True]}, "provider": {"sort": "price"}}
    sync = openai.OpenAI(
        base_url=f"{server.base_url}/v1", api_key=key, default_headers=headers, max_retries=0
    )
    answer = sync.chat.completions.create(
        model=SONNET,
        messages=[{"role": "user", "content": "Wie ist das Wetter in Köln?"}],
        tools=tools,
        tool_choice="auto",
        response_format={"type": "json_object"},
        n=2,
        max_completion_tokens=500,
        extra_body=unknown,
    )
    assert answer.choices[0].message.content == text
    sync.close()

    client = openai.AsyncOpenAI(
        base_url=f"{server.base_url}/v1", api_key=key, default_headers=headers, max_retries=0
    )
    plain = await client.chat.completions.create(
        model="gemini-3.0-flash", messages=[{"role": "user", "content": "Hi"}], stream=True
    )
    chunks = [chunk async for chunk in plain]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 20
    counted = await client.chat.completions.create(
        model=FLASH,
        messages=[{"role": "user", "content": "Hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in counted]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3
    await client.close()

    first, second, third = (call.body for call in fake_openrouter.chat_calls())
    assert first == {
        "model": SONNET,
        "stream": False,
        "messages": [{"role": "user", "content": "Wie ist das Wetter in Köln?"}],
        "tools": tools,
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "n": 2,
        "max_completion_tokens": 500,
        **unknown,
    }
    assert (second["model"], second["stream"], "stream_options" in second) == (FLASH, True, False)
    assert third["stream_options"] == {"include_usage": True}

    entries = await _until_entries(db, 3)
    assert [(e["job_id"], e["agent"], e["model"]) for e in entries] == [
        ("job-sdk", "Boomer_Ang", SONNET),
        ("job-sdk", "Boomer_Ang", FLASH),
        ("job-sdk", "Boomer_Ang", FLASH),
    ]
    classes = [tuple(e[k] for k in TOKEN_FIELDS) for e in entries]
    assert classes == [(300_000, 100_000, 50_000, 400, 100), (20, 0, 0, 7, 0), (12, 0, 0, 3, 0)]
    # Sonnet at its long rate: 150,000·6.00 + 100,000·0.60 + 50,000·7.50 + 300·22.50
    # + 100·22.50 = 1,344,000 per 1M. Flash: 20·0.10 + 7·0.40 = 4.8; 12·0.10 + 3·0.40 = 2.4.
    assert [e["cost_usd"] for e in entries] == [
        Decimal("1.344"),
        Decimal("0.0000048"),
        Decimal("0.0000024"),
    ]
    assert [e["provider_cost_usd"] for e in entries] == [
        Decimal("1.3440000000000000001"),
        Decimal("0.0000005"),
        Decimal("0.0000036"),
    ]
    customers = await db.fetch(
        f"SELECT DISTINCT customer_id FROM {STORED_EVENTS} WHERE job_id = 'job-sdk'"
    )
    assert [r["customer_id"] for r in customers] == ["acme"]


async def test_a_body_over_the_limit_is_a_413_in_openai_s_shape_naming_the_limit(
    database_url: str, fake_openrouter: FakeOpenRouter
) -> None:
    """Before: the framework's bare "Request Entity Too Large", while every other route
    of LUC names the limit and the setting that makes it."""
    settings = settings_for(
        database_url,
        OPENROUTER_API_KEY=fake_openrouter.api_key,
        LUC_OPENROUTER_BASE_URL=fake_openrouter.base_url,
        LUC_GATEWAY_CHAIN="openrouter",
        LUC_MAX_BODY_BYTES="65536",
    )
    prompt = "é" * 40_000  # 80,000 bytes of UTF-8
    async with AsyncTestClient(app=create_app(settings)) as client:
        response = await client.post(
            "/v1/chat/completions",
            json={**BODY, "messages": [{"role": "user", "content": prompt}]},
            headers={"X-LUC-Job": "job-big", "X-LUC-Agent": "ORACLE"},
        )
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == "request body is over the limit of 65536 bytes (LUC_MAX_BODY_BYTES)"
    assert fake_openrouter.chat_calls() == []


async def test_an_event_whose_data_spans_several_lines_reaches_the_sdk_whole(
    relayed: tuple[Scripted, AsyncTestClient[Any]], db: asyncpg.Connection
) -> None:
    """SSE lets one event's data span several ``data:`` lines (pretty-printed JSON, as some
    relays send it); the reader joins them with newlines. Before: LUC wrote the joined data
    back after one ``data: `` prefix, so its second line reached the client as a line of
    its own, not data: the SDK got the first line alone and failed to decode it."""
    upstream, proxy = relayed
    chunk = (
        b'data: {"id": "gen-lines-1", "object": "chat.completion.chunk",\n'
        b'data:  "model": "google/gemini-3.0-flash",\n'
        b'data:  "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi!"},\n'
        b'data:               "finish_reason": "stop"}]}\n\n'
    )
    last = (
        b'data: {"id": "gen-lines-1", "object": "chat.completion.chunk", "choices": [],\n'
        b'data:  "usage": {"prompt_tokens": 100, "completion_tokens": 20, "cost": 0.0000183}}\n\n'
    )
    body = b": OPENROUTER PROCESSING\n\n" + chunk + last + b"data: [DONE]\n\n"
    upstream.answer(ok(body, b"content-type: text/event-stream"))
    sdk = openai.AsyncOpenAI(
        base_url=f"{proxy.base_url}/v1",
        api_key="unused",
        # The SDK types its own httpx2.AsyncClient; the test client (an httpx.AsyncClient)
        # has the methods it calls.
        http_client=proxy,  # type: ignore[arg-type]
        default_headers={"X-LUC-Job": "job-lines", "X-LUC-Agent": "ORACLE"},
        max_retries=0,
    )
    stream = await sdk.chat.completions.create(model=FLASH, messages=STORY, stream=True)
    chunks = [c async for c in stream]
    assert [c.choices[0].delta.content for c in chunks if c.choices] == ["Hi!"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 20
    await proxied_usage_recorded(proxy.app)
    [entry] = await ledger(db)
    assert (entry["event_id"], entry["input_tokens"], entry["output_tokens"]) == (
        "gen-lines-1",
        100,
        20,
    )
    assert entry["provider_cost_usd"] == Decimal("0.0000183")


async def test_an_answer_of_n_choices_without_usage_estimates_the_output_of_every_choice(
    relayed: tuple[Scripted, AsyncTestClient[Any]], db: asyncpg.Connection
) -> None:
    """Every choice of ``n`` is generated and paid for. Before: with no usage to meter
    (and no generation id to ask about), the estimate counted the first choice's text
    only, a third of what this answer's three choices generated."""
    upstream, proxy = relayed
    answer = {
        "object": "chat.completion",
        "model": FLASH,
        "choices": [
            {"index": n, "finish_reason": "stop", "message": {"role": "assistant", "content": c}}
            for n, c in enumerate(["A" * 40, "B" * 40, "C" * 40])
        ],
    }
    upstream.answer(ok(json.dumps(answer).encode(), b"content-type: application/json"))
    response = await proxy.post(
        "/v1/chat/completions",
        json={**BODY, "n": 3},
        headers={"X-LUC-Job": "job-n", "X-LUC-Agent": "ORACLE"},
    )
    assert response.status_code == 200, response.text
    assert [c["message"]["content"][0] for c in response.json()["choices"]] == ["A", "B", "C"]
    await proxied_usage_recorded(proxy.app)
    [entry] = await ledger(db)
    # "Tell me a story": 15 characters → 4 tokens in; 3 × 40 characters → 30 tokens out.
    assert (entry["input_tokens"], entry["output_tokens"]) == (4, 30)
    # 4·0.10 + 30·0.40 = 12.4 per 1M
    assert entry["cost_usd"] == Decimal("0.0000124")


async def test_a_stream_of_n_choices_in_one_chunk_without_usage_estimates_every_choice(
    relayed: tuple[Scripted, AsyncTestClient[Any]], db: asyncpg.Connection
) -> None:
    """A provider may carry several choices in one chunk; each one's delta was generated.
    Before: only the first choice of each chunk was counted."""
    upstream, proxy = relayed

    def chunk(*contents: str) -> bytes:
        choices = [{"index": n, "delta": {"content": c}} for n, c in enumerate(contents)]
        data = {"object": "chat.completion.chunk", "model": FLASH, "choices": choices}
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    body = chunk("A" * 20, "B" * 20) + chunk("A" * 20, "B" * 20) + b"data: [DONE]\n\n"
    upstream.answer(ok(body, b"content-type: text/event-stream"))
    response = await proxy.post(
        "/v1/chat/completions",
        json={**BODY, "n": 2, "stream": True},
        headers={"X-LUC-Job": "job-n", "X-LUC-Agent": "ORACLE"},
    )
    assert response.status_code == 200, response.text
    assert response.text.endswith("data: [DONE]\n\n")
    await proxied_usage_recorded(proxy.app)
    [entry] = await ledger(db)
    # 4 tokens in; 2 chunks × 2 choices × 20 characters = 80 → 20 tokens out.
    assert (entry["input_tokens"], entry["output_tokens"]) == (4, 20)
