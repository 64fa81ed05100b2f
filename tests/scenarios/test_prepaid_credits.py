"""Prepaid credits burn down as usage is recorded (SPEC §12), worked out by hand.

Acme is on a 25 % markup of the catalog cost. anthropic/claude-opus-4.6 input costs 5.00
USD per 1M tokens, so 200,000 input tokens cost 1.00 and are priced 1.25 for Acme.

Acme holds two grants: 3.00 expiring in ten days (drawn first) and 2.00 expiring in sixty;
its low balance is 2.00. Five batches of its job price 1.25, 1.875, 0.625, 2.50 and 0.25:

| batch | price  | drawn from the 3.00 | from the 2.00 | not covered | balance | alert     |
|-------|--------|---------------------|---------------|-------------|---------|-----------|
| 1     | 1.25   | 1.25                |               |             | 3.75    |           |
| 2     | 1.875  | 1.75                | 0.125         |             | 1.875   | low       |
| 3     | 0.625  |                     | 0.625         |             | 1.25    |           |
| 4     | 2.50   |                     | 1.25          | 1.25        | 0       | exhausted |
| 5     | 0.25   |                     |               | 0.25        | 0       |           |

Price 6.50 in all, 5.00 of it from credits: the job's invoice totals 6.50, applies 5.00
of credits and asks for 1.50. The ledger and its rollups are what they would be without
credits: credits are drawn beside them. A re-pricing at 10 % instead lowers each event's
price by 0.15 × its cost (0.78 in all); each gives back what it drew up to that (0.75), and
the follow-up credit note of −0.78 applies −0.75 of credits and owes 0.03 as money.
"""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from service.catalog.service import CatalogCache
from service.customers.plans import PlanCache
from service.invoices.verify import verify_stored
from service.recording.service import record_batch
from tests.scenarios.test_customer_prices import job, make_customer, make_plan, money
from tests.support.databases import connected
from tests.support.events import record_accepted, usage_event, wire_event
from tests.support.ledger_truth import assert_rollups_equal_ledger

D = Decimal
OPUS = "anthropic/claude-opus-4.6"
AT = "2026-11-20T10:00:00Z"


def opus(
    event_id: str,
    input_tokens: int,
    job_id: str = "job-acme",
    occurred_at: str = AT,
    **more: Any,
) -> Any:
    """An Opus call of ``input_tokens`` input tokens only: 5.00 per 1M."""
    return wire_event(
        event_id,
        occurred_at=occurred_at,
        job_id=job_id,
        agent="ORACLE",
        model=OPUS,
        input_tokens=input_tokens,
        output_tokens=0,
        **{"customer_id": "acme", **more},
    )


def _later(days: int) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def grant(client: AsyncTestClient[Any], amount: str, **fields: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/customers/acme/credits", json={"amount_usd": amount, **fields}
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def balance(client: AsyncTestClient[Any]) -> Decimal:
    response = await client.get("/v1/customers/acme/credits")
    assert response.status_code == 200, response.text
    return D(response.json()["balance_usd"])


async def credit_alerts(client: AsyncTestClient[Any]) -> list[tuple[str, str]]:
    items = (await client.get("/v1/alerts", params={"customer_id": "acme"})).json()["items"]
    return [(a["type"], a["balance_usd"]) for a in items]


async def test_a_markup_customer_s_credits_burn_down_batch_by_batch(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    await make_plan(client, "markup25", basis="catalog", markup="0.25")
    await make_customer(client, "acme", plan_id="markup25", low_balance_usd="2.00")
    sooner = await grant(client, "3.00", expires_at=_later(10), reference="PO-1")
    later = await grant(client, "2.00", expires_at=_later(60), reference="PO-2")

    steps = [
        ([opus("b1", 200_000)], D("3.75"), []),
        ([opus("b2", 300_000)], D("1.875"), [("customer.credits_low", "1.875")]),
        ([opus("b3a", 60_000), opus("b3b", 40_000)], D("1.25"), []),
        ([opus("b4", 400_000)], D(0), [("customer.credits_exhausted", "0")]),
        ([opus("b5", 40_000)], D(0), []),
    ]
    alerts: list[tuple[str, str]] = []
    for events, expected, raised in steps:
        await record_accepted(client, events)
        alerts += raised
        assert await balance(client) == expected, [e["id"] for e in events]
        assert await credit_alerts(client) == alerts
    # A replayed batch is a duplicate: it draws nothing again.
    await client.post("/v1/events/batch", json={"events": [opus("b1", 200_000)]})
    assert await credit_alerts(client) == alerts

    shown = (await client.get("/v1/customers/acme/credits")).json()
    assert [(g["id"], g["remaining_usd"]) for g in shown["grants"]] == [
        (sooner["id"], "0"),
        (later["id"], "0"),
    ]
    drawn = await db.fetch(
        """
        SELECT d.event_id, d.grant_id, d.amount_usd
        FROM credit_draws AS d JOIN ledger_entries AS e ON e.id = d.entry_id
        ORDER BY d.id
        """
    )
    assert [(r["event_id"], r["grant_id"], r["amount_usd"]) for r in drawn] == [
        ("b1", sooner["id"], D("1.25")),
        ("b2", sooner["id"], D("1.75")),
        ("b2", later["id"], D("0.125")),
        ("b3a", later["id"], D("0.375")),  # 60,000 tokens: 0.30 × 1.25
        ("b3b", later["id"], D("0.25")),  # 40,000 tokens: 0.20 × 1.25
        ("b4", later["id"], D("1.25")),
    ]
    acme_job = await job(client, "job-acme")
    assert money(acme_job["price_usd"]) == D("6.5")
    assert money(acme_job["cost_usd"]) == D("5.2")  # the ledger as without credits
    customer = (await client.get("/v1/customers/acme")).json()
    assert customer["credit_balance_usd"] == "0"
    await assert_rollups_equal_ledger(db)

    # The job's invoice bills the price, 6.50; the credits its entries drew, 5.00, are
    # applied; 1.50 is due.
    issued = await client.post("/v1/jobs/job-acme/invoices")
    assert issued.status_code == 201, issued.text
    invoice = issued.json()
    assert (invoice["kind"], invoice["total_usd"]) == ("invoice", "6.50")
    assert (invoice["credits_applied_usd"], invoice["amount_due_usd"]) == ("5.00", "1.50")
    number = invoice["number"]
    text = (await client.get(f"/v1/invoices/{number}", params={"format": "csv"})).text
    rows = {r["row_type"]: r for r in csv.DictReader(io.StringIO(text))}
    assert (rows["credits"]["amount_usd"], rows["amount_due"]["amount_usd"]) == ("5.00", "1.50")
    html = (await client.get(f"/v1/invoices/{number}", params={"format": "html"})).text
    assert "id='invoice-amount-due'>1.50<" in html
    assert (await verify_stored(db, number)).problems == []

    # A version from October at 10 % instead of 25 %, re-priced: each event's price falls by
    # 0.15 × its cost, 0.78 in all (5.20 × 0.15), to 5.72. Each fall is drawn as a
    # re-rating books it (the price given back, the new one drawn; credits burn before
    # money): b1, b2, b3a and b3b, paid by credits, free 0.15 + 0.225 + 0.045 + 0.03 =
    # 0.45; b4 (2.50, of which credits paid 1.25) now costs 2.20 and draws those 0.45
    # (1.70 by credits), b5 (paid in money) nothing. The credits still pay 5.00 of the
    # 5.72, and the fall comes off the money: the credit note owes 0.78 as money. (Given
    # back up to what each event drew, 0.75 came back as credit while b4's and b5's prices
    # stayed owed in money: a plan's re-pricing and a catalog's re-rating of the same fall
    # ended apart.)
    added = await client.post(
        "/v1/plans/markup25/versions",
        json={"effective_from": "2026-10-01T00:00:00Z", "basis": "catalog", "markup": "0.10"},
    )
    assert added.status_code == 201, added.text
    repriced = await client.post(
        "/v1/plans/markup25/reprice", json={"since": "2026-10-01T00:00:00Z"}
    )
    assert repriced.json()["events_changed"] == 6, repriced.text
    shown = (await client.get("/v1/customers/acme/credits")).json()
    assert shown["balance_usd"] == "0"
    assert [g["remaining_usd"] for g in shown["grants"]] == ["0", "0"]
    # The follow-up is a credit note of 0.78, all of it owed to Acme as money.
    follow_up = await client.post("/v1/jobs/job-acme/invoices")
    assert follow_up.status_code == 201, follow_up.text
    note = follow_up.json()
    assert (note["kind"], note["total_usd"], note["corrects"]) == ("credit_note", "-0.78", number)
    assert (D(note["credits_applied_usd"]), note["amount_due_usd"]) == (D(0), "-0.78")
    assert (await verify_stored(db, note["number"])).problems == []
    assert await credit_alerts(client) == alerts  # credit given back re-arms nothing
    await assert_rollups_equal_ledger(db)


async def test_credit_stop_refuses_at_zero_through_burn_down_and_admits_after_a_grant(
    client: AsyncTestClient[Any],
) -> None:
    await make_plan(client, "markup25", basis="catalog", markup="0.25")
    await make_customer(client, "acme", plan_id="markup25", credit_stop=True)
    await grant(client, "0.30")
    reserve = {
        "job_id": "job-acme",
        "agent": "ORACLE",
        "model": OPUS,
        "estimated_cost_usd": "0.01",
        "customer_id": "acme",
    }
    await record_accepted(client, [opus("s1", 40_000)])  # 0.25 drawn: 0.05 left
    assert (await client.post("/v1/budgets/reservations", json=reserve)).status_code == 200
    await record_accepted(client, [opus("s2", 40_000)])  # 0.05 drawn, 0.20 not covered
    assert await balance(client) == 0
    refused = await client.post("/v1/budgets/reservations", json=reserve)
    assert refused.status_code == 402
    assert refused.json()["refused_by"] == "credits"
    await grant(client, "1")
    assert (await client.post("/v1/budgets/reservations", json=reserve)).status_code == 200


async def test_re_pricing_draws_when_a_job_gets_its_customer_and_gives_back_when_lowered(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    plan = await make_plan(client, "markup25", basis="catalog", markup="0.25")
    await make_customer(client, "acme", plan_id="markup25")
    await grant(client, "10")
    # A job recorded before anyone said whose it is: priced for no customer, no draw.
    untold = dict(opus("r1", 400_000, job_id="job-late"))
    del untold["customer_id"]
    await record_accepted(client, [untold])
    assert await balance(client) == 10
    # Its customer set: re-priced at once (2.00 × 1.25 = 2.50), drawn in that transaction.
    patched = await client.patch("/v1/jobs/job-late", json={"customer_id": "acme"})
    assert patched.status_code == 200, patched.text
    assert await balance(client) == D("7.5")
    # A version from October at 10 %: 2.00 × 1.10 = 2.20, 0.30 less, given back.
    added = await client.post(
        "/v1/plans/markup25/versions",
        json={
            "effective_from": plan["versions"][0]["effective_from"],
            "basis": "catalog",
            "markup": "0.10",
        },
    )
    assert added.status_code == 201, added.text
    done = await client.post("/v1/plans/markup25/reprice", json={"since": "2026-10-01T00:00:00Z"})
    assert done.status_code == 200, done.text
    assert done.json()["events_changed"] == 1
    assert await balance(client) == D("7.8")
    held = await db.fetchval("SELECT sum(amount_usd) FROM credit_draws WHERE event_id = 'r1'")
    assert held == D("2.2")  # what the event is billed now, all of it from credits
    await assert_rollups_equal_ledger(db)


async def test_twenty_concurrent_batches_on_one_small_grant_end_at_exactly_zero(
    client: AsyncTestClient[Any], database_url: str, db: asyncpg.Connection
) -> None:
    await make_plan(client, "markup25", basis="catalog", markup="0.25")
    await make_customer(client, "acme", plan_id="markup25", low_balance_usd="0.5")
    await grant(client, "1.00")

    async def batch(n: int) -> None:
        # Each batch its own job of Acme's: nothing but the credit account orders them.
        event = usage_event(
            f"c{n}",
            job_id=f"job-{n}",
            agent="ORACLE",
            model=OPUS,
            input_tokens=40_000,  # 0.20 × 1.25 = 0.25
            output_tokens=0,
            customer_id="acme",
        )
        async with connected(database_url) as conn:
            outcome = await record_batch(conn, CatalogCache(), [event], plan_cache=PlanCache())
        assert [r.status for r in outcome.results] == ["accepted"]

    await asyncio.gather(*(batch(n) for n in range(20)))
    assert await balance(client) == 0
    assert await db.fetchval("SELECT sum(amount_usd) FROM credit_draws") == D("1.00")
    assert await db.fetchval("SELECT min(remaining_usd) FROM credit_grants") == 0
    assert [kind for kind, _ in await credit_alerts(client)] == [
        "customer.credits_low",
        "customer.credits_exhausted",
    ]
    await assert_rollups_equal_ledger(db)


async def test_a_monthly_invoice_applies_what_the_month_s_entries_drew_not_the_minimum(
    client: AsyncTestClient[Any],
) -> None:
    # Globex: + 25 %, a monthly minimum of 5.00, invoiced monthly, 1.00 of credits. October:
    # two calls of two jobs priced 1.25 (1.00 drawn: all there is) and 0.625 (nothing left).
    await make_plan(client, "min5", basis="catalog", markup="0.25", minimum_monthly_usd="5.00")
    await make_customer(client, "globex", plan_id="min5", invoicing="monthly")
    granted = await client.post("/v1/customers/globex/credits", json={"amount_usd": "1.00"})
    assert granted.status_code == 201, granted.text
    october = "2026-10-10T09:00:00Z"
    calls = [
        opus("m1", 200_000, job_id="job-m1", occurred_at=october),
        opus("m2", 100_000, job_id="job-m2", occurred_at=october),
    ]
    for call in calls:
        call["customer_id"] = "globex"
    await record_accepted(client, calls)
    issued = await client.post("/v1/customers/globex/invoices", json={"month": "2026-10"})
    assert issued.status_code == 201, issued.text
    invoice = issued.json()
    # 1.25 + 0.625 = 1.875, topped up by 3.125 to the 5.00 minimum; the credits the
    # month's entries drew, 1.00, are applied; the minimum drew nothing: 4.00 is due.
    assert [x["amount_usd"] for x in invoice["lines"]] == ["1.25", "0.625", "3.125"]
    assert invoice["total_usd"] == "5.00"
    assert (invoice["credits_applied_usd"], invoice["amount_due_usd"]) == ("1.00", "4.00")


async def test_credits_applied_are_shown_as_drawn_and_the_column_still_adds_up(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    """A grant of 5.005 and 1,080,000 Opus input tokens at the list price (5.40): the
    invoice applies 5.005 of credits, every form says 5.005 (never 5.01), and the amount
    due, 5.40 − 5.005 = 0.395, is rounded once, half up, to 0.40; the 0.005 step is its own
    row, so 5.40 − 5.005 + 0.005 = 0.40 as printed. (Credits shown as 5.01 asked 0.39: the
    customer paid 0.39 + 5.005 = 5.395 for 5.40 of usage.)"""
    await make_plan(client, "list", basis="catalog", markup="0")
    await make_customer(client, "acme", plan_id="list")
    await grant(client, "5.005")
    await record_accepted(client, [opus("c1", 1_080_000)])
    assert await balance(client) == 0
    issued = await client.post("/v1/jobs/job-acme/invoices")
    assert issued.status_code == 201, issued.text
    invoice = issued.json()
    assert (
        invoice["total_usd"],
        invoice["credits_applied_usd"],
        invoice["amount_due_rounding_usd"],
        invoice["amount_due_usd"],
    ) == ("5.40", "5.005", "0.005", "0.40")
    number = invoice["number"]
    text = (await client.get(f"/v1/invoices/{number}", params={"format": "csv"})).text
    summary = [
        (r["row_type"], r["amount_usd"], r["amount_exact_usd"])
        for r in csv.DictReader(io.StringIO(text))
        if r["row_type"] != "line"
    ]
    assert summary == [
        ("subtotal", "5.40", "5.4"),
        ("rounding", "0.00", "0"),
        ("total", "5.40", "5.40"),
        ("credits", "5.005", "5.005"),
        ("amount_due_rounding", "0.005", "0.005"),
        ("amount_due", "0.40", "0.40"),
    ]
    html = (await client.get(f"/v1/invoices/{number}", params={"format": "html"})).text
    assert "id='invoice-credits'>5.005<" in html
    assert "id='invoice-amount-due-rounding'>0.005<" in html
    assert "id='invoice-amount-due'>0.40<" in html
    assert "Prepaid credits are shown as applied, at every digit" in html
    assert (await verify_stored(db, number)).problems == []


async def test_a_fall_of_price_leaves_the_same_credits_whether_re_priced_or_re_rated(
    client: AsyncTestClient[Any],
) -> None:
    """One call priced 0.50, of which a 0.25 grant paid half, falls to 0.25, never invoiced:
    the credits pay the 0.25 it now costs, nothing is owed in money. A catalog's re-rating
    did so (a reversal and a new booking); a plan's re-pricing gave the 0.25 back as credit
    and asked the 0.25 in money."""
    # Re-priced: Opus 10,000 output tokens cost 0.25 (25.00 per 1M), + 100 % = 0.50; then
    # + 0 % (the re-rating below changes the input price only).
    await make_plan(client, "double", basis="catalog", markup="1")
    await make_customer(client, "pco", plan_id="double")
    # Re-rated: Opus 100,000 input tokens at 5.00 per 1M = 0.50; then at 2.50.
    await make_plan(client, "plain", basis="catalog", markup="0")
    await make_customer(client, "rco", plan_id="plain")
    for customer in ("pco", "rco"):
        response = await client.post(
            f"/v1/customers/{customer}/credits", json={"amount_usd": "0.25"}
        )
        assert response.status_code == 201, response.text
    await record_accepted(
        client,
        [
            wire_event(
                "p1",
                occurred_at=AT,
                job_id="job-p",
                agent="ORACLE",
                model=OPUS,
                input_tokens=0,
                output_tokens=10_000,
                customer_id="pco",
            ),
            opus("r1", 100_000, job_id="job-r", customer_id="rco"),
        ],
    )
    added = await client.post(
        "/v1/plans/double/versions",
        json={"effective_from": "2026-10-01T00:00:00Z", "basis": "catalog", "markup": "0"},
    )
    assert added.status_code == 201, added.text
    repriced = await client.post("/v1/plans/double/reprice", json={"since": "2026-10-01T00:00:00Z"})
    assert repriced.status_code == 200, repriced.text
    catalog = (await client.get("/v1/catalog")).json()
    (entry,) = [m for m in catalog["models"] if m["id"] == OPUS]
    version = await client.post(
        "/v1/catalog/versions",
        json={
            "effective_from": "2026-10-01T00:00:00Z",
            "label": "opus halved",
            "parent": catalog["id"],
            "models": [{**entry, "input": "2.50"}],
        },
    )
    assert version.status_code == 201, version.text
    rerated = await client.post("/v1/catalog/rerate", json={"since": "2026-10-01T00:00:00Z"})
    assert rerated.status_code == 200, rerated.text

    for customer, job_id in (("pco", "job-p"), ("rco", "job-r")):
        credits = (await client.get(f"/v1/customers/{customer}/credits")).json()
        assert credits["balance_usd"] == "0", (customer, credits)
        response = await client.post(f"/v1/jobs/{job_id}/invoices")
        assert response.status_code == 201, response.text
        invoice = response.json()
        assert (
            invoice["total_usd"],
            invoice["credits_applied_usd"],
            invoice["amount_due_usd"],
        ) == ("0.25", "0.25", "0.00"), customer
