"""The fallback chain Vertex AI → OpenRouter → stub: what falls through, what stops, and
that whoever answers is metered."""

from __future__ import annotations

import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import asyncpg
import httpx
import pytest

from service.errors import AuthenticationFailedError, InsufficientCreditsError
from service.gateway.chain import build_chain, upstream_client
from service.gateway.metering import Gateway
from service.gateway.openrouter import OpenRouterProvider
from service.gateway.stub import StubProvider
from service.gateway.upstream import RetryPolicy
from service.gateway.vertex import VertexProvider
from service.settings import load_settings
from tests.support.fake_openrouter import (
    FAST_RETRY,
    BrokenAnswer,
    FakeOpenRouter,
    Reply,
    failure,
)
from tests.support.fake_vertex import FakeVertex, vertex_usage
from tests.support.ledger_truth import STORED_EVENT, ledger

pytestmark = pytest.mark.asyncio

FLASH = "google/gemini-3.0-flash"  # 0.10 in, 0.40 out per 1M
HELLO = [{"role": "user", "content": "Hello there"}]


async def test_vertex_failing_with_503_falls_through_to_openrouter(
    make_gateway: Callable[..., Gateway],
    vertex: VertexProvider,
    openrouter: OpenRouterProvider,
    fake_vertex: FakeVertex,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    fake_vertex.push(*[failure(503, "The service is currently unavailable.")] * 3)
    fake_openrouter.push(Reply(text="from OpenRouter"))
    result = await make_gateway(vertex, openrouter).chat(
        model=FLASH, messages=HELLO, job_id="job-c", agent="ACHEEVY"
    )
    assert (result.text, result.provider) == ("from OpenRouter", "openrouter")
    assert len(fake_vertex.chat_calls()) == 3  # the first try and FAST_RETRY's two retries
    [entry] = await ledger(db)
    assert entry["provider"] == "openrouter"  # the failed attempts spent nothing


async def test_vertex_bills_thinking_tokens_left_out_of_completion_tokens(
    make_gateway: Callable[..., Gateway],
    vertex: VertexProvider,
    fake_vertex: FakeVertex,
    db: asyncpg.Connection,
) -> None:
    fake_vertex.push(Reply(text="Thought it over.", usage=vertex_usage(100, 20, thinking=30)))
    pieces = [
        item
        async for item in make_gateway(vertex).stream(
            model=FLASH, messages=HELLO, job_id="job-v", agent="ORACLE"
        )
    ]
    result = pieces[-1]
    assert not isinstance(result, str)
    # total 150 − prompt 100 = 50 output tokens, 30 of them reasoning:
    # 100·0.10 + 20·0.40 + 30·0.40 = 10 + 8 + 12 = 30 per 1M
    assert (result.tokens.output, result.tokens.reasoning) == (50, 30)
    assert result.cost.usd == Decimal("0.00003")
    assert result.cost.provider_usd is None  # Vertex reports no cost
    [entry] = await ledger(db)
    assert (entry["provider"], entry["output_tokens"], entry["cost_usd"]) == (
        "vertex",
        50,
        Decimal("0.00003"),
    )
    assert entry["provider_cost_usd"] is None
    [call] = fake_vertex.chat_calls()
    assert call.headers["authorization"] == f"Bearer {fake_vertex.api_key}"
    assert call.body["stream_options"] == {"include_usage": True}


async def test_a_model_vertex_does_not_serve_goes_straight_to_openrouter(
    make_gateway: Callable[..., Gateway],
    vertex: VertexProvider,
    openrouter: OpenRouterProvider,
    fake_vertex: FakeVertex,
    fake_openrouter: FakeOpenRouter,
) -> None:
    result = await make_gateway(vertex, openrouter).chat(
        model="anthropic/claude-haiku-4.5", messages=HELLO, job_id="j", agent="a"
    )
    assert result.provider == "openrouter"
    assert fake_vertex.chat_calls() == []


async def test_a_401_stops_the_chain_with_the_token_advice(
    make_gateway: Callable[..., Gateway],
    http: httpx.AsyncClient,
    openrouter: OpenRouterProvider,
    fake_vertex: FakeVertex,
    fake_openrouter: FakeOpenRouter,
) -> None:
    stale = VertexProvider(http, fake_vertex.base_url, FAST_RETRY, access_token="ya29.expired")
    with pytest.raises(AuthenticationFailedError) as raised:
        await make_gateway(stale, openrouter).chat(
            model=FLASH, messages=HELLO, job_id="j", agent="a"
        )
    assert "LUC_VERTEX_TOKEN_COMMAND" in raised.value.message
    assert fake_openrouter.chat_calls() == []  # a credentials problem is not hidden


async def test_a_token_command_is_run_again_when_vertex_answers_401(
    make_gateway: Callable[..., Gateway],
    http: httpx.AsyncClient,
    fake_vertex: FakeVertex,
    tmp_path: Path,
) -> None:
    counter = tmp_path / "runs"
    script = tmp_path / "token.py"
    script.write_text(
        "import pathlib\n"
        f"p = pathlib.Path({str(counter)!r})\n"
        "n = int(p.read_text()) + 1 if p.exists() else 1\n"
        "p.write_text(str(n))\n"
        "print(f'ya29.token-{n}')\n"
    )
    fake_vertex.api_key = "ya29.token-2"  # the first token has expired
    provider = VertexProvider(
        http, fake_vertex.base_url, FAST_RETRY, token_command=f"{sys.executable} {script}"
    )
    result = await make_gateway(provider).chat(model=FLASH, messages=HELLO, job_id="j", agent="a")
    assert result.provider == "vertex"
    assert counter.read_text() == "2"


async def test_a_429_with_its_retries_spent_falls_through_to_the_stub(
    make_gateway: Callable[..., Gateway],
    http: httpx.AsyncClient,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    one_retry = RetryPolicy(max_retries=1, max_retry_after_seconds=5)
    provider = OpenRouterProvider(
        http, fake_openrouter.base_url, fake_openrouter.api_key, one_retry
    )
    fake_openrouter.push(failure(429, retry_after=0), failure(429, retry_after=0))
    result = await make_gateway(provider, StubProvider()).chat(
        model=FLASH, messages=HELLO, job_id="j", agent="a"
    )
    assert result.provider == "stub"
    assert len(fake_openrouter.chat_calls()) == 2
    assert [e["provider"] for e in await ledger(db)] == ["stub"]


async def test_a_402_stops_the_chain_instead_of_answering_from_the_stub(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    fake_openrouter.push(failure(402))
    with pytest.raises(InsufficientCreditsError) as raised:
        await make_gateway(openrouter, StubProvider()).chat(
            model=FLASH, messages=HELLO, job_id="j", agent="a"
        )
    assert "add credits" in raised.value.message
    assert len(fake_openrouter.chat_calls()) == 1  # 402 is never retried
    assert await ledger(db) == []


async def test_without_any_key_the_stub_answers_and_its_usage_is_recorded_but_never_billed(
    make_gateway: Callable[..., Gateway], db: asyncpg.Connection
) -> None:
    settings = load_settings({"OPENROUTER_API_KEY": "", "LUC_VERTEX_PROJECT": "p"})
    chain = build_chain(settings, openrouter_http=None, vertex_http=None)
    assert chain.heuristic
    gateway = make_gateway(*chain.providers)

    result = await gateway.chat(model=FLASH, messages=HELLO, job_id="job-h", agent="Boomer_Ang")
    streamed = [
        item
        async for item in gateway.stream(
            model=FLASH, messages=HELLO, job_id="job-h", agent="Boomer_Ang"
        )
    ]

    reply = "[stub reply: no LLM provider answered this] You said: Hello there"  # 65 chars
    assert result.text == reply
    assert "".join(i for i in streamed if isinstance(i, str)) == reply
    # "Hello there": 11 chars → 3 tokens; the reply: 65 chars → 17 tokens (4 chars a token)
    assert (result.tokens.input, result.tokens.output) == (3, 17)
    # No LLM was called: the catalog's 3·0.10 + 17·0.40 = 7.1 per 1M is not what it cost.
    assert result.cost.usd == Decimal(0)
    entries = await ledger(db)
    assert [(e["provider"], e["input_tokens"], e["output_tokens"]) for e in entries] == [
        ("stub", 3, 17),
        ("stub", 3, 17),
    ]
    assert all(e["cost_usd"] == Decimal(0) for e in entries)
    reasons = await db.fetch("SELECT reason, unpriced_count, price_output FROM ledger_entries")
    assert [tuple(r) for r in reasons] == [
        ("not billed: stub answer (heuristic mode, no LLM was called)", 0, Decimal(0))
    ] * 2
    row = await db.fetchrow(STORED_EVENT, entries[0]["event_id"])
    assert row is not None
    status, attributes = row
    assert (status, attributes["usage_source"]) == ("ok", "estimate")


async def test_a_200_whose_body_is_cut_short_is_billed_from_its_generation_then_falls_through(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    fake_openrouter.push(BrokenAnswer(id="gen-cut-1"))  # 40 in, 8 out spent upstream
    result = await make_gateway(openrouter, StubProvider()).chat(
        model=FLASH, messages=HELLO, job_id="job-b", agent="ACHEEVY"
    )
    assert result.provider == "stub"
    assert len(fake_openrouter.chat_calls()) == 1  # a 200 is never asked again in place
    paid, fallback = await ledger(db)
    # From GET /generation: 40·0.10 + 8·0.40 = 7.2 per 1M
    assert (paid["event_id"], paid["provider"], paid["input_tokens"], paid["output_tokens"]) == (
        "gen-cut-1",
        "openrouter",
        40,
        8,
    )
    assert paid["cost_usd"] == Decimal("0.0000072")
    row = await db.fetchrow(STORED_EVENT, "gen-cut-1")
    assert row is not None
    status, attributes = row
    assert status == "error"
    assert attributes["usage_source"] == "generation"
    assert "not JSON" in attributes["error"]
    # The stub's own answer, once: "Hello there" 3 tokens in, its 65-char reply 17 out.
    assert (fallback["provider"], fallback["input_tokens"], fallback["output_tokens"]) == (
        "stub",
        3,
        17,
    )
    assert fallback["event_id"] == result.generation_id


async def test_a_200_carrying_only_an_error_object_is_billed_by_estimate_and_stops_on_402(
    make_gateway: Callable[..., Gateway],
    openrouter: OpenRouterProvider,
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    body = b'{"error": {"code": 402, "message": "This request requires more credits"}}'
    fake_openrouter.push(BrokenAnswer(body=body, with_id=False))
    with pytest.raises(InsufficientCreditsError):
        await make_gateway(openrouter, StubProvider()).chat(
            model=FLASH, messages=HELLO, job_id="job-b", agent="ACHEEVY"
        )
    [paid] = await ledger(db)  # the stub never answered: a 402 stops the chain
    # No id, no usage: estimated from the prompt, "Hello there" 11 chars → 3 tokens, at 0.10
    assert (paid["provider"], paid["input_tokens"], paid["output_tokens"]) == ("openrouter", 3, 0)
    assert paid["cost_usd"] == Decimal("0.0000003")
    row = await db.fetchrow(STORED_EVENT, paid["event_id"])
    assert row is not None
    status, attributes = row
    assert (status, attributes["usage_source"]) == ("error", "estimate")


async def test_a_200_whose_body_stalls_past_the_read_timeout_is_billed_not_retried_in_place(
    make_gateway: Callable[..., Gateway],
    fake_openrouter: FakeOpenRouter,
    db: asyncpg.Connection,
) -> None:
    async with upstream_client(timeout_seconds=0.3) as impatient:
        provider = OpenRouterProvider(
            impatient,
            fake_openrouter.base_url,
            fake_openrouter.api_key,
            FAST_RETRY,
            generation_delays=(0.05, 0.1, 0.2),
        )
        fake_openrouter.push(
            BrokenAnswer(body=b'{"id": "gen-slow-1",', id="gen-slow-1", stall=True)
        )
        result = await make_gateway(provider, StubProvider()).chat(
            model=FLASH, messages=HELLO, job_id="job-s", agent="ORACLE"
        )
    assert result.provider == "stub"
    assert len(fake_openrouter.chat_calls()) == 1
    assert [(e["event_id"], e["provider"], e["output_tokens"]) for e in await ledger(db)] == [
        ("gen-slow-1", "openrouter", 8),
        (result.generation_id, "stub", 17),
    ]
    row = await db.fetchrow(STORED_EVENT, "gen-slow-1")
    assert row is not None
    status, attributes = row
    assert status == "error"
    assert "stalled beyond the timeout" in attributes["error"]
