"""Migration 0018 (prepaid credits) on a database with budget alerts: they keep every field
and become alerts of type ``budget.threshold_crossed``. Its downgrade refuses while credit
alerts exist (alerts are facts: a downgrade never drops one), and otherwise takes the
schema back exactly, the budget alerts intact.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from service.db.migrations import migrate_sync, schema_revision
from tests.support.budgets import opus_event
from tests.support.databases import connected
from tests.support.events import record_accepted
from tests.support.migrations import downgrade_before, revision_before

REVISION = "0018_prepaid_credits"

BUDGET_ALERTS = """
SELECT budget_id, threshold, spent_usd, limit_usd, scope, scope_id FROM alerts ORDER BY threshold
"""


async def _budget_alerts(client: Any) -> list[Any]:
    budget = await client.post(
        "/v1/budgets",
        json={"scope": "job", "scope_id": "job-1", "period": "lifetime", "limit_usd": "1"},
    )
    assert budget.status_code == 201, budget.text
    await record_accepted(client, [opus_event("e1", "0.90", occurred_at="2026-11-20T10:00:00Z")])
    items = (await client.get("/v1/alerts")).json()["items"]
    assert [(a["type"], a["threshold"]) for a in items] == [
        ("budget.threshold_crossed", 0.5),
        ("budget.threshold_crossed", 0.8),
    ]
    return list(items)


async def test_the_downgrade_keeps_budget_alerts_and_the_upgrade_types_them(
    client: Any, database_url: str
) -> None:
    answered = await _budget_alerts(client)
    async with connected(database_url) as conn:
        kept = [tuple(r) for r in await conn.fetch(BUDGET_ALERTS)]
    assert kept == [
        (1, Decimal("0.5"), Decimal("0.90"), Decimal(1), "job", "job-1"),
        (1, Decimal("0.8"), Decimal("0.90"), Decimal(1), "job", "job-1"),
    ]
    await downgrade_before(database_url, REVISION)
    async with connected(database_url) as conn:
        assert await schema_revision(conn) == revision_before(REVISION)
        assert [tuple(r) for r in await conn.fetch(BUDGET_ALERTS)] == kept
        assert await conn.fetchval("SELECT to_regclass('credit_grants')") is None
    await asyncio.to_thread(migrate_sync, database_url)
    assert (await client.get("/v1/alerts")).json()["items"] == answered


async def test_the_downgrade_refuses_while_credit_alerts_exist(
    client: Any, database_url: str
) -> None:
    created = await client.post("/v1/customers", json={"id": "acme", "name": "Acme"})
    assert created.status_code == 201, created.text
    async with connected(database_url) as conn:
        await conn.execute(
            "INSERT INTO alerts (type, customer_id, balance_usd) "
            "VALUES ('customer.credits_exhausted', 'acme', 0)"
        )
    with pytest.raises(Exception, match="credit alerts exist"):
        await downgrade_before(database_url, REVISION)
    async with connected(database_url) as conn:
        assert await schema_revision(conn) != revision_before(REVISION)
        assert await conn.fetchval("SELECT count(*) FROM alerts") == 1


async def test_an_alert_is_either_a_budget_alert_or_a_credit_alert(
    client: Any, db: asyncpg.Connection
) -> None:
    for values in (
        "('customer.credits_low', NULL, 1)",  # a credit alert names its customer
        "('budget.threshold_crossed', 'acme', 1)",  # a budget alert names its budget
    ):
        with pytest.raises(asyncpg.CheckViolationError):
            await db.execute(f"INSERT INTO alerts (type, customer_id, balance_usd) VALUES {values}")
