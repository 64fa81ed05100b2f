"""The proxy under credit_stop: a call for a customer whose prepaid credits are at zero is
refused with 402 before any upstream call, and goes through again once credits are granted
(the in-process gateway's admission, ``DatabaseBudgets``, and the fake OpenRouter over HTTP).
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from service.customers.credits import NewGrant, grant_credits
from tests.support.fake_openrouter import FakeOpenRouter, Reply, usage

FLASH = "google/gemini-3.0-flash"
BODY = {
    "model": FLASH,
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
    "max_tokens": 100,
}


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
