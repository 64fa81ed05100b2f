"""Where the money features meet (SPEC §3, §4, §6, §7, §11, §12 together), worked by hand.

AIMS prices (catalog version 1), USD per 1M tokens: google/gemini-3.0-flash 0.10 input,
0.40 output. A call of 1,000,000 input and 100,000 output tokens costs 0.10 + 0.04 = 0.14.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from service.invoices.verify import verify_stored
from tests.scenarios.test_customer_prices import FLASH_CALL, make_customer, make_plan
from tests.support.events import record_accepted, wire_event
from tests.support.ledger_truth import assert_rollups_equal_ledger

D = Decimal


async def issued(client: AsyncTestClient[Any], path: str, **body: Any) -> dict[str, Any]:
    response = await client.post(path, json=body or None)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def test_usage_billed_on_a_job_invoice_counts_toward_the_months_minimum(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    """A monthly customer's job invoiced on its own (README: a monthly customer's jobs'
    invoices stay available) bills part of October; the month's invoice tops the month up
    to its 1.00 minimum counting that part too: October comes to 1.00, not 1.28."""
    await make_plan(client, "min1", basis="catalog", markup="0", minimum_monthly_usd="1.00")
    await make_customer(client, "mono", plan_id="min1", invoicing="monthly")
    await record_accepted(
        client,
        [
            wire_event(
                "m-a",
                job_id="job-m",
                customer_id="mono",
                occurred_at="2026-10-05T00:00:00Z",
                **FLASH_CALL,
            ),
            # The month's last instant is October's.
            wire_event(
                "m-b",
                job_id="job-m",
                customer_id="mono",
                occurred_at="2026-10-31T23:59:59.999999Z",
                **FLASH_CALL,
            ),
            wire_event(
                "m-c",
                job_id="job-n",
                customer_id="mono",
                occurred_at="2026-10-20T00:00:00Z",
                **FLASH_CALL,
            ),
        ],
    )
    by_job = await issued(client, "/v1/jobs/job-m/invoices")
    assert by_job["total_usd"] == "0.28"
    october = await issued(client, "/v1/customers/mono/invoices", month="2026-10")
    # Usage 0.28 (job-m's invoice) + 0.14 (job-n, here) = 0.42: the top-up is 0.58.
    assert [(x.get("line_type"), x.get("job_id"), x["amount_usd"]) for x in october["lines"]] == [
        (None, "job-n", "0.14"),
        ("minimum", None, "0.58"),
    ]
    assert october["total_usd"] == "0.72"
    # A late October call of job-n: 0.14 more usage gives back 0.14 of the top-up.
    await record_accepted(
        client,
        [
            wire_event(
                "m-d",
                job_id="job-n",
                customer_id="mono",
                occurred_at="2026-10-21T00:00:00Z",
                **FLASH_CALL,
            )
        ],
    )
    follow_up = await client.post("/v1/customers/mono/invoices", json={"month": "2026-10"})
    assert follow_up.status_code == 409, follow_up.text
    assert "0.00 at the cent" in follow_up.json()["detail"]
    for number in (by_job["number"], october["number"]):
        assert (await verify_stored(db, number)).ok
    await assert_rollups_equal_ledger(db)


HAIKU = "anthropic/claude-haiku-4.5"
# Haiku at 0.80 input, 4.00 output: 1,000,000 input and 100,000 output = 0.80 + 0.40 = 1.20;
# at 1.00 input (the version below): 1.00 + 0.40 = 1.40.
HAIKU_CALL = {"model": HAIKU, "input_tokens": 1_000_000, "output_tokens": 100_000}


async def test_a_re_rating_after_credits_were_bought_draws_only_the_change(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    """A call billed and paid in money (no credits then), credits bought, then a catalog
    correction raises its price by 0.20: the follow-up bills 0.20 and the credits pay
    0.20 of it, not the whole 1.40 re-booking (which left 1.20 of credits spent on usage
    already paid, and an invoice applying 1.40 of credits to a 0.20 total)."""
    await make_plan(client, "list", basis="catalog", markup="0")
    await make_customer(client, "paid", plan_id="list")
    await record_accepted(
        client,
        [
            wire_event(
                "h-1",
                job_id="job-h",
                customer_id="paid",
                occurred_at="2026-10-10T00:00:00Z",
                **HAIKU_CALL,
            )
        ],
    )
    first = await issued(client, "/v1/jobs/job-h/invoices")
    assert (first["total_usd"], first["credits_applied_usd"], first["amount_due_usd"]) == (
        "1.20",
        "0.00",
        "1.20",
    )
    await issued(client, "/v1/customers/paid/credits", amount_usd="5")
    version = await issued(
        client,
        "/v1/catalog/versions",
        effective_from="2026-10-01T00:00:00Z",
        label="haiku-input-1.00",
        parent=1,
        models=[
            {
                "id": HAIKU,
                "name": "Claude Haiku 4.5",
                "tier": "fast",
                "input": "1.00",
                "output": "4.00",
            }
        ],
    )
    assert version["id"] == 2
    rerated = await client.post("/v1/catalog/rerate", json={"since": "2026-10-01T00:00:00Z"})
    assert rerated.status_code == 200, rerated.text
    assert rerated.json()["price_delta_usd"] == "0.2"
    credits = (await client.get("/v1/customers/paid/credits")).json()
    assert credits["balance_usd"] == "4.8"
    follow_up = await issued(client, "/v1/jobs/job-h/invoices")
    assert (
        follow_up["kind"],
        follow_up["total_usd"],
        follow_up["credits_applied_usd"],
        follow_up["amount_due_usd"],
    ) == ("invoice", "0.20", "0.20", "0.00")
    for number in (first["number"], follow_up["number"]):
        assert (await verify_stored(db, number)).ok
    await assert_rollups_equal_ledger(db)


LLAMA = "meta-llama/llama-3.3-70b-instruct"
# Llama at 0.10 / 0.10: 1,000,000 input and 100,000 output = 0.10 + 0.01 = 0.11; at
# 0.05 / 0.05 (the correction below): 0.055.
LLAMA_CALL = {"model": LLAMA, "input_tokens": 1_000_000, "output_tokens": 100_000}


async def test_a_month_re_rated_below_its_minimum_with_credits_owes_only_the_difference(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    """October: ten calls of 0.11 (1.10, over the 1.00 minimum), 0.50 of credits drawn by
    the first four and a half, 0.60 paid in money. A correction halves them (0.55): the
    minimum tops October up by 0.45, so it comes to 1.00 and the credit note is −0.10.
    The credits the halving frees pay the calls paid in money before (credits burn first):
    none come back, and the credit note repays 0.10 in money (0.50 credits + 0.50 money)."""
    await make_plan(client, "min1", basis="catalog", markup="0", minimum_monthly_usd="1.00")
    await make_customer(client, "mon", plan_id="min1", invoicing="monthly")
    await issued(client, "/v1/customers/mon/credits", amount_usd="0.50")
    await record_accepted(
        client,
        [
            wire_event(
                f"l-{i}",
                job_id="job-l",
                customer_id="mon",
                occurred_at=f"2026-10-1{i}T00:00:00Z",
                **LLAMA_CALL,
            )
            for i in range(10)
        ],
    )
    october = await issued(client, "/v1/customers/mon/invoices", month="2026-10")
    assert (october["total_usd"], october["credits_applied_usd"], october["amount_due_usd"]) == (
        "1.10",
        "0.50",
        "0.60",
    )
    await issued(
        client,
        "/v1/catalog/versions",
        effective_from="2026-10-01T00:00:00Z",
        label="llama-half",
        parent=1,
        models=[
            {
                "id": LLAMA,
                "name": "Llama 3.3 70B",
                "tier": "economy",
                "input": "0.05",
                "output": "0.05",
            }
        ],
    )
    rerated = await client.post("/v1/catalog/rerate", json={"since": "2026-10-01T00:00:00Z"})
    assert rerated.json()["price_delta_usd"] == "-0.55"
    assert (await client.get("/v1/customers/mon/credits")).json()["balance_usd"] == "0"
    note = await issued(client, "/v1/customers/mon/invoices", month="2026-10")
    assert [(x.get("line_type"), x["amount_usd"]) for x in note["lines"]] == [
        (None, "-1.1"),
        (None, "0.55"),
        ("minimum", "0.45"),
    ]
    assert (
        note["kind"],
        note["total_usd"],
        note["credits_applied_usd"],
        note["amount_due_usd"],
        note["corrects"],
    ) == ("credit_note", "-0.10", "0.00", "-0.10", october["number"])
    assert note["number"].startswith("LUC-CN-")
    for number in (october["number"], note["number"]):
        assert (await verify_stored(db, number)).ok
    await assert_rollups_equal_ledger(db)


async def _settled(client: AsyncTestClient[Any], customer_id: str, job_id: str) -> Decimal:
    """What the customer settled of the job, every way: the amounts due of its documents
    (money; negative, owed to it) plus the credits it used up (granted − balance)."""
    numbers = [
        i["number"]
        for i in (await client.get("/v1/invoices", params={"job_id": job_id})).json()["items"]
    ]
    due = [
        D((await client.get(f"/v1/invoices/{number}")).json()["amount_due_usd"])
        for number in numbers
    ]
    credits = (await client.get(f"/v1/customers/{customer_id}/credits")).json()
    granted = sum((D(g["amount_usd"]) for g in credits["grants"]), D(0))
    return sum(due, D(0)) + granted - D(credits["balance_usd"])


async def _haiku_input_lowered_from_october_8(client: AsyncTestClient[Any]) -> Any:
    """Haiku's input at 0.40 per 1M (the AIMS catalog's 0.80 halved) from 8 October, and
    the ledger re-rated from then: the answer of ``POST /v1/catalog/rerate``."""
    await issued(
        client,
        "/v1/catalog/versions",
        effective_from="2026-10-08T00:00:00Z",
        label="haiku-input-0.40",
        parent=1,
        models=[
            {
                "id": HAIKU,
                "name": "Claude Haiku 4.5",
                "tier": "fast",
                "input": "0.40",
                "output": "4.00",
            }
        ],
    )
    rerated = await client.post("/v1/catalog/rerate", json={"since": "2026-10-08T00:00:00Z"})
    assert rerated.status_code == 200, rerated.text
    return rerated


async def test_a_document_mixing_rises_and_falls_paid_partly_in_credits_loses_no_money(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    """Two customers on the list price, each with a Haiku call (1.20) invoiced; a catalog
    correction lowers Haiku to 0.80 (input 0.40).

    ``money``: its call was paid in money, credits came after (5.00), and a new call at 0.80
    drew them. Its follow-up: −1.20 + 0.80 + 0.80 = 0.40, credits applied 0.80: the
    customer is owed 0.40 (its call's fall, paid in money). Clamped at zero, those 0.40
    were on no document and in no balance.

    ``credit``: its call drew its whole grant (1.20); a Llama call (0.11) was then paid in
    money. The correction gives back 1.20 and draws 0.80: the credit note is −1.20 + 0.80
    + 0.11 = −0.29, credits applied −0.40, so 0.11 is still due in money. Clamped at zero,
    the customer had its 0.40 of credits back and paid nothing for the Llama call.

    Summed over every document and the credit balance, each customer settles exactly its
    usage's price."""
    await make_plan(client, "list", basis="catalog", markup="0")
    await make_customer(client, "money", plan_id="list")
    await make_customer(client, "credit", plan_id="list")
    await issued(client, "/v1/customers/credit/credits", amount_usd="1.20")

    def call(event_id: str, job_id: str, customer: str, day: int, **tokens: Any) -> Any:
        return wire_event(
            event_id,
            job_id=job_id,
            customer_id=customer,
            occurred_at=f"2026-10-{day:02d}T00:00:00Z",
            **tokens,
        )

    await record_accepted(
        client,
        [
            call("a-1", "job-money", "money", 10, **HAIKU_CALL),
            call("b-1", "job-credit", "credit", 10, **HAIKU_CALL),
        ],
    )
    first_a = await issued(client, "/v1/jobs/job-money/invoices")
    first_b = await issued(client, "/v1/jobs/job-credit/invoices")
    assert (first_a["total_usd"], first_a["credits_applied_usd"], first_a["amount_due_usd"]) == (
        "1.20",
        "0.00",
        "1.20",
    )
    assert (first_b["total_usd"], first_b["credits_applied_usd"], first_b["amount_due_usd"]) == (
        "1.20",
        "1.20",
        "0.00",
    )
    # Before the correction's date: never re-rated; no credits left, paid in money.
    await record_accepted(client, [call("b-2", "job-credit", "credit", 5, **LLAMA_CALL)])
    await issued(client, "/v1/customers/money/credits", amount_usd="5.00")
    rerated = await _haiku_input_lowered_from_october_8(client)
    assert rerated.json()["price_delta_usd"] == "-0.8"
    await record_accepted(client, [call("a-2", "job-money", "money", 12, **HAIKU_CALL)])

    follow_a = await issued(client, "/v1/jobs/job-money/invoices")
    assert (
        follow_a["kind"],
        follow_a["total_usd"],
        follow_a["credits_applied_usd"],
        follow_a["amount_due_usd"],
    ) == ("invoice", "0.40", "0.80", "-0.40")
    note_b = await issued(client, "/v1/jobs/job-credit/invoices")
    assert (
        note_b["kind"],
        note_b["total_usd"],
        note_b["credits_applied_usd"],
        note_b["amount_due_usd"],
    ) == ("credit_note", "-0.29", "-0.40", "0.11")
    # Every cent lands: a-1 and a-2 at 0.80 each; b-1 at 0.80 and b-2 at 0.11.
    assert await _settled(client, "money", "job-money") == D("1.60")
    assert await _settled(client, "credit", "job-credit") == D("0.91")
    for number in (first_a["number"], first_b["number"], follow_a["number"], note_b["number"]):
        assert (await verify_stored(db, number)).problems == []
    html = (await client.get(f"/v1/invoices/{follow_a['number']}", params={"format": "html"})).text
    assert "Credit due to you (USD)</td><td class='num' id='invoice-amount-due'>-0.40<" in html
    await assert_rollups_equal_ledger(db)


async def test_a_call_an_expired_grant_paid_re_rated_lower_stays_paid_by_that_grant(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    """A Haiku call (1.20) drew a grant of 1.20 expiring in seconds; a grant of 5.00 without
    expiry stayed whole. The first grant expires; a correction lowers the call to 0.80. The
    re-booking draws 0.80 of the expired grant again (the call was made while it was live):
    the credit note is −0.40 with −0.40 of credits and nothing due, and the live 5.00 are
    untouched. (It drew 0.80 of the live grant: a fall in price cost the customer 0.80 of
    live credits; with no live grant, it asked 0.80 in money for a call paid already.)"""
    await make_plan(client, "list", basis="catalog", markup="0")
    await make_customer(client, "lapse", plan_id="list")
    soon = datetime.now(UTC) + timedelta(seconds=3)
    expiring = await issued(
        client, "/v1/customers/lapse/credits", amount_usd="1.20", expires_at=soon.isoformat()
    )
    await issued(client, "/v1/customers/lapse/credits", amount_usd="5.00")
    await record_accepted(
        client,
        [
            wire_event(
                "x-1",
                job_id="job-x",
                customer_id="lapse",
                occurred_at="2026-10-10T00:00:00Z",
                **HAIKU_CALL,
            )
        ],
    )
    first = await issued(client, "/v1/jobs/job-x/invoices")
    assert (first["total_usd"], first["credits_applied_usd"], first["amount_due_usd"]) == (
        "1.20",
        "1.20",
        "0.00",
    )
    # Wait, on the database's clock, until the grant has expired.
    deadline = time.monotonic() + 30
    while await db.fetchval("SELECT clock_timestamp() <= $1", soon):
        assert time.monotonic() < deadline, "the grant never expired"
        await asyncio.sleep(0.05)
    credits = (await client.get("/v1/customers/lapse/credits")).json()
    assert credits["balance_usd"] == "5"
    await _haiku_input_lowered_from_october_8(client)
    note = await issued(client, "/v1/jobs/job-x/invoices")
    assert (
        note["kind"],
        note["total_usd"],
        note["credits_applied_usd"],
        note["amount_due_usd"],
    ) == ("credit_note", "-0.40", "-0.40", "0.00")
    credits = (await client.get("/v1/customers/lapse/credits")).json()
    assert credits["balance_usd"] == "5"
    assert {g["id"]: (g["remaining_usd"], g["expired"]) for g in credits["grants"]}[
        expiring["id"]
    ] == ("0.4", True)
    for number in (first["number"], note["number"]):
        assert (await verify_stored(db, number)).problems == []
    await assert_rollups_equal_ledger(db)
