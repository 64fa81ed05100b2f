"""The proxy under credit_stop: a call for a customer whose prepaid credits are at zero is
refused with 402 before any upstream call, and goes through again once credits are granted
(the in-process gateway's admission, ``DatabaseBudgets``, and the fake OpenRouter over HTTP).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.auth.keys import create_key
from service.customers.credits import NewGrant, grant_credits
from tests.support.fake_openrouter import FakeOpenRouter, Reply, usage
from tests.support.settings import settings_for

FLASH = "google/gemini-3.0-flash"
BODY = {
    "model": FLASH,
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "max_tokens": 100,
}


@pytest.fixture
async def proxy(
    database_url: str, fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = settings_for(
        database_url,
        LUC_AUTH="on",
        OPENROUTER_API_KEY=fake_openrouter.api_key,
        LUC_OPENROUTER_BASE_URL=fake_openrouter.base_url,
        LUC_GATEWAY_CHAIN="openrouter",
    )
    _, key = await create_key(db, "sdk", "ingest")
    async with AsyncTestClient(app=create_app(settings)) as client:
        client.headers["Authorization"] = f"Bearer {key}"
        yield client


async def test_the_proxy_answers_402_at_zero_credits_and_calls_upstream_after_a_grant(
    proxy: AsyncTestClient[Any], fake_openrouter: FakeOpenRouter, db: asyncpg.Connection
) -> None:
    await db.execute("INSERT INTO customers (id, name, credit_stop) VALUES ('acme', 'Acme', true)")
    headers = {"X-LUC-Job": "job-c", "X-LUC-Agent": "ACHEEVY", "X-LUC-Customer": "acme"}

    refused = await proxy.post("/v1/chat/completions", json=BODY, headers=headers)
    assert refused.status_code == 402, refused.text
    error = refused.json()["error"]
    assert error["code"] == "credits_exhausted"
    assert error["type"] == "insufficient_quota"
    assert "customer 'acme' has no prepaid credits left" in error["message"]
    assert fake_openrouter.chat_calls() == []

    await grant_credits(db, "acme", NewGrant(amount_usd=Decimal("0.50")), datetime.now(UTC))
    fake_openrouter.push(Reply(text="Paris.", usage=usage(100, 20, cost="0.000018")))
    answered = await proxy.post("/v1/chat/completions", json=BODY, headers=headers)
    assert answered.status_code == 200, answered.text
    assert len(fake_openrouter.chat_calls()) == 1
