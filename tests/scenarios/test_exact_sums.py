"""Money sums are exact at any precision LUC accepts; rounding happens once, on an invoice.

The story: a catalog version prices a test model at $999.999999999999999999999999999999 per
1M input tokens (30 decimal places, the catalog's limit) plus $0.004 per request. One call
with one input token costs

    1 × 999.999999999999999999999999999999 / 1,000,000 + 0.004
    = 0.000999999999999999999999999999999999 + 0.004
    = 0.004999999999999999999999999999999999   (36 decimal places)

Summed under Python's default 28-digit context this became 0.005, and its invoice total
0.01; exactly, the subtotal stays 0.004999…9 and rounding it once, half up, gives 0.00.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg

from tests.support.commands import luc_on
from tests.support.events import wire_event

MODEL = "test/precise"
JOB = "job-precise"
AGENT = "ORACLE"
COST = "0.004999999999999999999999999999999999"
# A second call on the same day and job, to make the day and the job sum two costs:
# 2 × COST = 0.009999999999999999999999999999999998 (36 places, rounds to 0.01).
TWO_COSTS = "0.009999999999999999999999999999999998"


async def add_precise_model(client: Any) -> None:
    response = await client.post(
        "/v1/catalog/versions",
        json={
            "effective_from": "2026-01-01T00:00:00Z",
            "parent": 1,
            "models": [
                {
                    "id": MODEL,
                    "name": "Precise",
                    "tier": "economy",
                    "input": "999.999999999999999999999999999999",
                    "output": "1",
                    "per_request": "0.004",
                }
            ],
        },
    )
    assert response.status_code == 201, response.text


call = partial(
    wire_event,
    occurred_at="2026-10-10T09:00:00Z",
    job_id=JOB,
    agent=AGENT,
    model=MODEL,
    input_tokens=1,
    output_tokens=0,
)


async def test_an_invoice_of_a_36_digit_cost_rounds_once_on_the_exact_subtotal(
    client: Any, db: asyncpg.Connection, database_url: str, tmp_path: Path
) -> None:
    await add_precise_model(client)
    recorded = await client.post("/v1/events", json=call("precise-1"))
    assert recorded.status_code == 201, recorded.text
    assert str(await db.fetchval("SELECT sum(cost_usd) FROM ledger_entries")) == COST

    preview = (await client.get(f"/v1/jobs/{JOB}/invoice")).json()
    assert preview["lines"][0]["amount_usd"] == COST
    # 0.004999…9 rounded half up to cents is 0.00: below the half cent, however close.
    assert (preview["subtotal_usd"], preview["total_usd"]) == (COST, "0.00")
    assert preview["rounding_usd"] == "-" + COST

    issued = await client.post(f"/v1/jobs/{JOB}/invoices")
    assert issued.status_code == 201, issued.text
    invoice = issued.json()
    assert (invoice["subtotal_usd"], invoice["total_usd"], invoice["rounding_usd"]) == (
        COST,
        "0.00",
        "-" + COST,
    )
    row = await db.fetchrow(
        "SELECT subtotal_usd, rounding_usd, total_usd FROM invoices WHERE number = $1",
        invoice["number"],
    )
    assert row is not None
    assert (str(row["subtotal_usd"]), str(row["rounding_usd"]), row["total_usd"]) == (
        COST,
        "-" + COST,
        Decimal("0.00"),
    )

    # `luc invoice verify` checks the arithmetic exactly too: the stored invoice passes...
    stored = await luc_on(database_url, "invoice", "verify", invoice["number"])
    assert stored.returncode == 0, stored.stdout + stored.stderr
    # ...and a forged export that claims the 28-digit sum (0.005 → 0.01) fails.
    forged = {**invoice, "subtotal_usd": "0.005", "rounding_usd": "0.005", "total_usd": "0.01"}
    export = tmp_path / "forged.json"
    export.write_text(json.dumps(forged), encoding="utf-8")
    rejected = await luc_on(database_url, "invoice", "verify", str(export))
    assert rejected.returncode != 0
    assert "the lines do not sum to the subtotal" in rejected.stdout + rejected.stderr


async def test_agents_usage_and_ledger_agree_to_the_last_digit(
    client: Any, db: asyncpg.Connection
) -> None:
    await add_precise_model(client)
    answer = await client.post(
        "/v1/events/batch", json={"events": [call("precise-a"), call("precise-b")]}
    )
    assert answer.json()["accepted"] == 2, answer.text

    ledger = await db.fetchval("SELECT sum(cost_usd) FROM ledger_entries WHERE agent = $1", AGENT)
    assert str(ledger) == TWO_COSTS

    agent = (await client.get(f"/v1/agents/{AGENT}")).json()
    assert agent["cost_usd"] == TWO_COSTS
    assert [d["cost_usd"] for d in agent["days"]] == [TWO_COSTS]
    # A range off UTC midnights is summed from the ledger; the total is still exact.
    ranged = (
        await client.get(
            f"/v1/agents/{AGENT}",
            params={"from": "2026-10-10T08:00:00Z", "to": "2026-10-10T10:00:00Z"},
        )
    ).json()
    assert ranged["cost_usd"] == TWO_COSTS

    by_agent = (await client.get("/v1/usage", params={"group_by": "agent"})).json()
    assert [(r["agent"], r["cost_usd"]) for r in by_agent["rows"]] == [(AGENT, TWO_COSTS)]
    job = (await client.get(f"/v1/jobs/{JOB}")).json()
    assert job["cost_usd"] == TWO_COSTS


async def test_a_re_rating_reverses_a_36_digit_cost_exactly(
    client: Any, db: asyncpg.Connection
) -> None:
    await add_precise_model(client)
    assert (await client.post("/v1/events", json=call("precise-r"))).status_code == 201
    # The model's price changes from before the event; re-rating reverses the old charge
    # (−0.004999…9, every digit) and books the new one: $1 per 1M input, no per-request.
    changed = await client.post(
        "/v1/catalog/versions",
        json={
            "effective_from": "2026-01-01T00:00:00Z",
            "models": [
                {"id": MODEL, "name": "Precise", "tier": "economy", "input": "1", "output": "1"}
            ],
            "parent": 2,
        },
    )
    assert changed.status_code == 201, changed.text
    rerated = await client.post(
        "/v1/catalog/rerate", json={"since": "2026-01-01T00:00:00Z", "dry_run": False}
    )
    assert rerated.status_code == 200, rerated.text
    # 0.000001 − 0.004999999999999999999999999999999999
    assert rerated.json()["delta_usd"] == "-0.004998999999999999999999999999999999"
    reversal = await db.fetchval(
        "SELECT cost_usd FROM ledger_entries WHERE reason LIKE 'reversal:%' AND event_id = $1",
        "precise-r",
    )
    assert str(reversal) == "-" + COST
    assert await db.fetchval("SELECT sum(cost_usd) FROM ledger_entries") == Decimal("0.000001")
    job = (await client.get(f"/v1/jobs/{JOB}")).json()
    assert job["cost_usd"] == "0.000001"


async def test_a_budget_threshold_compares_the_exact_spend_with_the_exact_limit(
    client: Any,
) -> None:
    # $1 and a hair: 40 significant digits. 28 digits would round the limit down to $1.
    limit = "1.000000000000000000000000000000000000001"
    budget = await client.post(
        "/v1/budgets",
        json={"scope": "global", "period": "lifetime", "limit_usd": limit, "thresholds": [1]},
    )
    assert budget.status_code == 201, budget.text
    assert budget.json()["limit_usd"] == limit

    def flash(event_id: str, input_tokens: int) -> dict[str, Any]:
        """gemini-3.0-flash input at $0.10 per 1M tokens."""
        return {**call(event_id), "model": "gemini-3.0-flash", "input_tokens": input_tokens}

    check = (await client.get("/v1/budgets/check", params={"job_id": JOB})).json()
    assert check["remaining_usd"] == limit  # every digit of it

    # 10,000,000 × $0.10/M = exactly $1.00: below the limit by 10^-39, so 100 % is not reached.
    assert (await client.post("/v1/events", json=flash("budget-1", 10_000_000))).status_code == 201
    assert (await client.get("/v1/alerts")).json()["items"] == []
    check = (await client.get("/v1/budgets/check", params={"job_id": JOB})).json()
    assert check["remaining_usd"] == "0.000000000000000000000000000000000000001"

    # One more token ($0.0000001) passes it: the alert fires then, once.
    assert (await client.post("/v1/events", json=flash("budget-2", 1))).status_code == 201
    alerts = (await client.get("/v1/alerts")).json()["items"]
    assert [(a["threshold"], a["spent_usd"]) for a in alerts] == [(1, "1.0000001")]
