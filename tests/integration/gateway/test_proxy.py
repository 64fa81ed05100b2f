"""The metering proxy in-process (no provider key: the stub answers): attribution
headers, the budget check, and OpenAI-shaped errors."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from tests.support.ledger_truth import ledger

pytestmark = pytest.mark.asyncio

FLASH = "google/gemini-3.0-flash"
BODY = {"model": FLASH, "messages": [{"role": "user", "content": "Hello there"}]}
ATTRIBUTION = {"X-LUC-Job": "job-p", "X-LUC-Agent": "ACHEEVY"}


async def test_a_call_without_attribution_headers_is_refused_with_a_clear_message(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    response = await client.post(
        "/v1/chat/completions", json=BODY, headers={"X-LUC-Agent": "ACHEEVY"}
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert "missing X-LUC-Job header" in error["message"]
    assert await ledger(db) == []


async def test_a_call_without_a_key_gets_an_openai_shaped_401(
    client: AsyncTestClient[Any],
) -> None:
    response = await client.post(
        "/v1/chat/completions", json=BODY, headers={**ATTRIBUTION, "Authorization": ""}
    )
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


async def test_the_stub_answers_through_the_proxy_and_is_metered(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    response = await client.post("/v1/chat/completions", json=BODY, headers=ATTRIBUTION)
    assert response.status_code == 200
    answer = response.json()
    assert answer["choices"][0]["message"]["content"].startswith("[stub reply")
    assert response.headers["x-luc-provider"] == "stub"
    # 3 input tokens (11 chars), 17 output (65 chars): 3·0.10 + 17·0.40 = 7.1 per 1M
    assert response.headers["x-luc-cost-usd"] == "0.0000071"
    [entry] = await ledger(db)
    assert (entry["job_id"], entry["agent"], entry["provider"]) == ("job-p", "ACHEEVY", "stub")
    assert entry["event_id"] == answer["id"] == response.headers["x-luc-event-id"]
    assert entry["cost_usd"] == Decimal("0.0000071")


async def test_an_exhausted_hard_budget_answers_402_before_any_call(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    budget = await client.post(
        "/v1/budgets",
        json={
            "scope": "job",
            "scope_id": "job-broke",
            "period": "lifetime",
            "limit_usd": "0.0001",
            "hard": True,
        },
    )
    assert budget.status_code == 201, budget.text
    # Estimate: 3 prompt tokens + max_tokens 1000 at 0.40 per 1M = 0.0004003 > 0.0001
    response = await client.post(
        "/v1/chat/completions",
        json={**BODY, "max_tokens": 1000},
        headers={"X-LUC-Job": "job-broke", "X-LUC-Agent": "ACHEEVY"},
    )
    assert response.status_code == 402
    error = response.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert error["message"].startswith("budget exhausted: budget")
    assert await ledger(db) == []
    # Another job is not held by that budget.
    other = await client.post("/v1/chat/completions", json=BODY, headers=ATTRIBUTION)
    assert other.status_code == 200


async def test_a_streamed_stub_answer_ends_with_usage_and_done(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    response = await client.post(
        "/v1/chat/completions", json={**BODY, "stream": True}, headers=ATTRIBUTION
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line for line in response.text.split("\n\n") if line]
    assert events[-1] == "data: [DONE]"
    assert '"usage"' in events[-2]
    [entry] = await ledger(db)
    assert (entry["input_tokens"], entry["output_tokens"]) == (3, 17)
