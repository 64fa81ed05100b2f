"""Changing a budget's limit re-evaluates its thresholds at once against the new limit: a
threshold the spend has already passed fires then, once per period, through the same
outbox (and signed webhook) as an alert raised by spend.

Costs by hand: Claude Opus 4.6 input tokens at 5.00 USD per 1M (``opus_event``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from tests.support.budgets import Receiver, opus_event
from tests.support.clock import clear_of_end
from tests.support.settings import settings_for


@pytest.fixture
async def app_client(database_url: str) -> AsyncIterator[AsyncTestClient[Any]]:
    settings = settings_for(
        database_url,
        LUC_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        LUC_WEBHOOK_POLL_SECONDS="0.2",
    )
    async with AsyncTestClient(app=create_app(settings)) as test_client:
        yield test_client


def _alerts(listed: dict[str, Any]) -> list[tuple[float, str, str]]:
    return [(a["threshold"], a["spent_usd"], a["limit_usd"]) for a in listed["items"]]


async def _patch(client: AsyncTestClient[Any], budget_id: int, limit: str) -> None:
    response = await client.patch(f"/v1/budgets/{budget_id}", json={"limit_usd": limit})
    assert response.status_code == 200, response.text


async def _job_budget_of_10(client: AsyncTestClient[Any], receiver: Receiver) -> int:
    """A lifetime budget of 10 USD on job-1, its alerts posted to ``receiver``; its id."""
    created = await client.post(
        "/v1/budgets",
        json={
            "scope": "job",
            "scope_id": "job-1",
            "period": "lifetime",
            "limit_usd": "10",
            "webhook_url": receiver.url(),
        },
    )
    assert created.status_code == 201, created.text
    budget: int = created.json()["id"]
    return budget


async def test_a_limit_lowered_below_spend_fires_the_passed_thresholds_at_once_and_once(
    app_client: AsyncTestClient[Any], receiver: Receiver, db: asyncpg.Connection
) -> None:
    client = app_client
    budget = await _job_budget_of_10(client, receiver)
    at = "2026-03-10T10:00:00Z"
    await client.post("/v1/events", json=opus_event("e1", "6.00", occurred_at=at))
    # 6.00 of 10: 50 % (5.00) passed, 80 % (8.00) not.
    assert _alerts((await client.get("/v1/alerts")).json()) == [(0.5, "6", "10")]

    # Lowered to 7: 80 % is 5.60, passed; 100 % is 7.00, not. It fires now, no new spend.
    await _patch(client, budget, "7")
    assert _alerts((await client.get("/v1/alerts")).json()) == [
        (0.5, "6", "10"),
        (0.8, "6", "7"),
    ]
    # Lowered to 5, below the spend: 100 % fires; 50 % and 80 % fired already this period.
    await _patch(client, budget, "5")
    # Raised and lowered again, in the same period: nothing fires twice.
    await _patch(client, budget, "100")
    await _patch(client, budget, "5")
    await _patch(client, budget, "4.5")
    expected = [(0.5, "6", "10"), (0.8, "6", "7"), (1.0, "6", "5")]
    assert _alerts((await client.get("/v1/alerts")).json()) == expected

    # Each went through the outbox, written with the change: one webhook per alert.
    outbox = await db.fetchval("SELECT count(*) FROM alert_outbox")
    assert outbox == 3
    deadline = time.monotonic() + 15
    while len(receiver.received()) < 3:
        assert time.monotonic() < deadline, f"webhooks received: {receiver.received()}"
        await asyncio.sleep(0.05)
    bodies = [msgspec.json.decode(d.body) for d in receiver.received()]
    assert sorted((b["data"]["threshold"], b["data"]["limit_usd"]) for b in bodies) == [
        (0.5, "10"),
        (0.8, "7"),
        (1.0, "5"),
    ]


async def test_new_thresholds_already_passed_fire_at_once_in_the_current_period(
    client: AsyncTestClient[Any],
) -> None:
    created = await client.post(
        "/v1/budgets",
        json={
            "scope": "agent",
            "scope_id": "ORACLE",
            "period": "day",
            "limit_usd": "1.00",
            "thresholds": [0.9],
        },
    )
    budget = created.json()["id"]
    now = (await clear_of_end("day")).replace(microsecond=0)  # today stays today
    yesterday = now.replace(hour=0, minute=0, second=0).timestamp() - 3600
    earlier = datetime.fromtimestamp(yesterday, UTC).isoformat()
    # Yesterday 0.80, today 0.40 (ORACLE): only today's period is re-evaluated.
    for event_id, usd, at in (("y1", "0.80", earlier), ("t1", "0.40", now.isoformat())):
        event = opus_event(event_id, usd, occurred_at=at) | {"agent": "ORACLE"}
        assert (await client.post("/v1/events", json=event)).status_code in (200, 201)
    assert (await client.get("/v1/alerts")).json()["items"] == []

    # Thresholds 0.25 and 0.5 are both behind today's 0.40 of a 0.60 limit (0.15, 0.30);
    # yesterday's 0.80 would pass all three, but that period is over.
    response = await client.patch(
        f"/v1/budgets/{budget}", json={"thresholds": [0.25, 0.5, 0.9], "limit_usd": "0.60"}
    )
    assert response.status_code == 200, response.text
    alerts = (await client.get("/v1/alerts")).json()["items"]
    today = now.replace(hour=0, minute=0, second=0).isoformat().replace("+00:00", "Z")
    assert [(a["threshold"], a["spent_usd"], a["period_start"]) for a in alerts] == [
        (0.25, "0.4", today),
        (0.5, "0.4", today),
    ]


async def test_a_limit_change_compares_spend_with_the_threshold_exactly(
    app_client: AsyncTestClient[Any],
) -> None:
    client = app_client
    created = await client.post(
        "/v1/budgets",
        json={
            "scope": "job",
            "scope_id": "job-1",
            "period": "lifetime",
            "limit_usd": "10",
            "thresholds": [0.8],
        },
    )
    assert created.status_code == 201, created.text
    budget = created.json()["id"]
    await client.post(
        "/v1/events", json=opus_event("e1", "0.08", occurred_at="2026-03-10T10:00:00Z")
    )
    # 80 % of 0.1000000000000000000000000000001 is 0.08000000000000000000000000000008,
    # above the 0.08 spent: nothing fires. (At 28 digits the product rounds to 0.08.)
    await _patch(client, budget, "0.1000000000000000000000000000001")
    assert _alerts((await client.get("/v1/alerts")).json()) == []
    # At exactly 0.1 the threshold is 0.08, reached.
    await _patch(client, budget, "0.1")
    assert _alerts((await client.get("/v1/alerts")).json()) == [(0.8, "0.08", "0.1")]


async def test_a_budget_created_past_some_thresholds_fires_them_at_once_and_later_ones_by_spend(
    app_client: AsyncTestClient[Any], receiver: Receiver, db: asyncpg.Connection
) -> None:
    """The spend came before the budget: without firing at creation, 50 % and 80 % of a
    budget created at 85 % would stay silent all period (no later event crosses them)."""
    client = app_client
    at = "2026-03-10T10:00:00Z"
    for event_id, usd in (("c1", "5.00"), ("c2", "3.50")):
        answer = await client.post("/v1/events", json=opus_event(event_id, usd, occurred_at=at))
        assert answer.status_code == 201, answer.text
    await _job_budget_of_10(client, receiver)
    # 8.50 of 10: 50 % (5.00) and 80 % (8.00) passed before the budget existed.
    assert _alerts((await client.get("/v1/alerts")).json()) == [
        (0.5, "8.5", "10"),
        (0.8, "8.5", "10"),
    ]
    # 100 % fires when spend reaches it, once; the two above do not fire again.
    await client.post("/v1/events", json=opus_event("c3", "1.50", occurred_at=at))
    await client.post("/v1/events", json=opus_event("c4", "0.50", occurred_at=at))
    assert _alerts((await client.get("/v1/alerts")).json()) == [
        (0.5, "8.5", "10"),
        (0.8, "8.5", "10"),
        (1.0, "10", "10"),
    ]
    assert await db.fetchval("SELECT count(*) FROM alert_outbox") == 3
