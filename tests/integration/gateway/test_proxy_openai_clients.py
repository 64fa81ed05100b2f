"""The proxy as OpenAI-compatible tools use it, against the fake OpenRouter on loopback:
errors in OpenAI's shape for whatever fails, and nothing on the ledger for an upstream
call that was never answered."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from tests.support.budgets import hard_budget
from tests.support.fake_openrouter import Failure, FakeOpenRouter, Reply, usage
from tests.support.fake_vertex import FakeVertex, vertex_usage
from tests.support.ledger_truth import ledger
from tests.support.settings import settings_for
from tests.support.waiting import proxied_usage_recorded

pytestmark = pytest.mark.asyncio

FLASH = "google/gemini-3.0-flash"  # 0.10 in, 0.40 out per 1M
BODY = {"model": FLASH, "messages": [{"role": "user", "content": "Tell me a story"}]}

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
