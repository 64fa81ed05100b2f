"""Migration 0015 on a database that already holds usage: every entry recorded before prices
were on the ledger is priced at its catalog cost (as a job without a customer or plan is),
for no customer and by no plan; every rollup gets the price of its entries, and the customer
× month rollup is filled from the ledger. No entry is edited.

The database is filled through the service at head (priced and unpriced events, a
re-rating), then taken back to the revision before 0015 (its downgrade drops what it adds:
the ledger as 0014 left it) and upgraded again.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from service.db.migrations import migrate_sync, schema_revision
from tests.support.databases import connected
from tests.support.events import record_accepted, wire_event
from tests.support.ledger_truth import rollup_differences
from tests.support.migrations import downgrade_before, revision_before

D = Decimal
REVISION = "0015_price_on_ledger"
GPT = "openai/gpt-5.1"  # AIMS: 3 in / 12 out per 1M


def event(event_id: str, model: str, **more: Any) -> dict[str, Any]:
    fields = {"occurred_at": "2026-10-05T10:00:00Z", **more}
    return wire_event(
        event_id, job_id="job-old", model=model, input_tokens=10_000, output_tokens=1_000, **fields
    )


async def test_upgrading_a_ledger_with_usage_prices_every_entry_at_its_cost(
    client: Any, database_url: str
) -> None:
    # GPT: 10,000 × 3 + 1,000 × 12 = 42,000 per 1M = 0.042; the other model is unpriced.
    await record_accepted(
        client,
        [
            event("o1", GPT, provider_cost_usd="0.04"),
            event("o2", "vendor/not-in-the-catalog", provider_cost_usd="0.001"),
            event("o3", GPT, occurred_at="2026-11-02T10:00:00Z"),
        ],
    )
    await downgrade_before(database_url, REVISION)
    async with connected(database_url) as conn:
        assert await schema_revision(conn) == revision_before(REVISION)
        columns = await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'price_usd'"
        )
        assert columns == 0

    await asyncio.to_thread(migrate_sync, database_url, REVISION)
    async with connected(database_url) as conn:
        entries = await conn.fetch(
            "SELECT event_id, cost_usd, price_usd, customer_id, plan_id, plan_version"
            " FROM ledger_entries ORDER BY id"
        )
        assert [tuple(e) for e in entries] == [
            ("o1", D("0.042"), D("0.042"), None, None, None),
            ("o2", None, None, None, None, None),  # unpriced: its price unknown too
            ("o3", D("0.042"), D("0.042"), None, None, None),
        ]
        months = await conn.fetch(
            "SELECT customer_id, month, price_usd, actual_cost_usd, events"
            " FROM rollup_customer_months ORDER BY month"
        )
        # October: 0.042 (o1) and nothing for o2's unknown price; actual 0.04 + 0.001.
        assert [(m[0], str(m[1]), *m[2:]) for m in months] == [
            (None, "2026-10-01", D("0.042"), D("0.041"), 2),
            (None, "2026-11-01", D("0.042"), D("0.042"), 1),
        ]
        job = await conn.fetchrow("SELECT price_usd FROM rollup_jobs WHERE job_id = 'job-old'")
        assert job is not None
        assert job["price_usd"] == D("0.084")
        assert await rollup_differences(conn) == {}


async def test_the_downgrade_refuses_while_budgets_of_a_new_scope_or_measure_exist(
    client: Any, database_url: str
) -> None:
    customer = await client.post("/v1/customers", json={"id": "acme", "name": "Acme"})
    assert customer.status_code == 201, customer.text
    made = await client.post(
        "/v1/budgets",
        json={"scope": "customer", "scope_id": "acme", "period": "month", "limit_usd": "1"},
    )
    assert made.status_code == 201, made.text
    try:
        await downgrade_before(database_url, REVISION)
    except Exception as exc:  # Alembic passes PostgreSQL's error through
        assert "budgets of scope customer" in str(exc)
    else:
        raise AssertionError("the downgrade went through")
    async with connected(database_url) as conn:
        # Still at head: the ledger and the budget as they were.
        assert await schema_revision(conn) != revision_before(REVISION)
        assert await conn.fetchval("SELECT scope FROM budgets") == "customer"
