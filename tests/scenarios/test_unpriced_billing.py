"""Invoices bill an event its customer's plan prices though no catalog version does
(SPEC §7, §11), and bill only the difference once a catalog version prices it; every
amount worked by hand.

AIMS prices (catalog version 1), USD per 1M tokens: Claude Sonnet 4.5 $3 in / $15 out.
``vendor/not-in-the-catalog`` is no catalog model until a test adds it; ``acme-ai/new-model-1``
is one only from 2027 (a version effective then), so October's calls to it are unpriced
by the catalog while a plan may list it.
"""

from __future__ import annotations

import csv
import io
from functools import partial
from typing import Any

import asyncpg

from service.invoices.verify import verify_document, verify_stored
from tests.scenarios.test_customer_prices import make_customer, make_plan
from tests.support.events import record_accepted, wire_event

SONNET = "anthropic/claude-sonnet-4.5"
UNKNOWN = "vendor/not-in-the-catalog"
NEW = "acme-ai/new-model-1"
OCTOBER = "2026-10-01T00:00:00Z"

october = partial(wire_event, occurred_at="2026-10-10T09:00:00Z", agent="ACHEEVY")


async def created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    return dict(response.json())


async def catalog_version(client: Any, effective_from: str, parent: int, model: str) -> int:
    """A catalog version pricing ``model`` at $1 in / $4 out per 1M tokens."""
    version = await created(
        await client.post(
            "/v1/catalog/versions",
            json={
                "effective_from": effective_from,
                "parent": parent,
                "models": [
                    {
                        "id": model,
                        "name": model.split("/")[1],
                        "tier": "standard",
                        "input": "1.00",
                        "output": "4.00",
                    }
                ],
            },
        )
    )
    return int(version["id"])


async def issue(client: Any, job_id: str) -> dict[str, Any]:
    return await created(await client.post(f"/v1/jobs/{job_id}/invoices"))


def lines_of(invoice: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [
        (x["model"], x["catalog_version"], x["events"], x["amount_usd"]) for x in invoice["lines"]
    ]


async def actual10_rising_to_50(client: Any) -> None:
    """Plan actual10's version from October, created later (it wins the tie): + 50 %."""
    await created(
        await client.post(
            "/v1/plans/actual10/versions",
            json={
                "effective_from": OCTOBER,
                "basis": "actual",
                "markup": "0.5",
                "per_request_usd": "0.001",
            },
        )
    )


async def test_a_job_invoice_bills_calls_the_catalog_cannot_price_at_the_plan_s_price(
    client: Any, database_url: str
) -> None:
    await catalog_version(client, "2027-01-01T00:00:00Z", 1, NEW)
    own = await make_plan(
        client,
        "own",
        basis="catalog",
        markup="0.25",
        models={NEW: {"input": "2.00", "output": "8.00"}},
    )
    await make_plan(client, "actual10", basis="actual", markup="0.10", per_request_usd="0.001")
    await make_customer(client, "acme", plan_id="own")
    await make_customer(client, "beta", plan_id="actual10")
    await record_accepted(
        client,
        [
            # The plan's own price: 100,000 × 2 + 10,000 × 8 = 280,000 per 1M = 0.28.
            october("u1", job_id="job-own", customer_id="acme", model=NEW,
                    input_tokens=100_000, output_tokens=10_000),
            # Not the plan's model, catalog basis, no cost: unpriced for acme too.
            october("u2", job_id="job-own", customer_id="acme", model=UNKNOWN,
                    input_tokens=1_000, output_tokens=100),
            # 10,000 × 3 + 1,000 × 15 = 45,000 per 1M = 0.045; × 1.25 = 0.05625.
            october("u3", job_id="job-own", customer_id="acme", model=SONNET,
                    input_tokens=10_000, output_tokens=1_000),
            # Actual basis, the provider's reported cost: 2.00 × 1.1 + 0.001 = 2.201.
            october("b1", job_id="job-act", customer_id="beta", model=UNKNOWN,
                    input_tokens=1_000, output_tokens=100, provider_cost_usd="2.00"),
        ],
    )  # fmt: skip
    preview = (await client.get("/v1/jobs/job-own/invoice")).json()
    invoice = await issue(client, "job-own")
    assert lines_of(preview) == lines_of(invoice)
    assert lines_of(invoice) == [(NEW, None, 1, "0.28"), (SONNET, 1, 1, "0.05625")]
    new = invoice["lines"][0]
    assert {k: new["unit_prices"][k] for k in ("input", "output")} == {"input": "2", "output": "8"}
    assert new["pricing"]["method"] == "plan_prices"
    assert new["pricing"]["plan_version"] == str(own["versions"][0]["id"])
    # 0.28 + 0.05625 = 0.33625 → 0.34; u2 waits, unpriced for its customer too.
    assert (invoice["subtotal_usd"], invoice["total_usd"]) == ("0.33625", "0.34")
    assert (invoice["covered_entries"], invoice["unpriced_events"]) == (2, 1)
    assert any("Not billed: 1 unpriced event" in n for n in invoice["notes"])
    assert any("Lines without a catalog version" in n for n in invoice["notes"])
    assert verify_document(invoice).ok

    number = invoice["number"]
    text = (await client.get(f"/v1/invoices/{number}?format=csv")).text
    rows = [r for r in csv.DictReader(io.StringIO(text)) if r["row_type"] == "line"]
    assert [(r["model"], r["catalog_version"], r["amount_usd"]) for r in rows] == [
        (NEW, "", "0.28"),
        (SONNET, "1", "0.05625"),
    ]
    assert rows[0]["unit_prices"] == (
        f"input 2.00 / 1M tokens; output 8.00 / 1M tokens; plan own version "
        f"{new['pricing']['plan_version']} prices"
    )
    page = (await client.get(f"/v1/invoices/{number}?format=html")).text
    assert "agent ACHEEVY · no catalog price" in page and "catalog version 1" in page
    # Finance: the new model's line has no catalog cost and no reported cost, so neither
    # its cost nor its margin is known; Sonnet's margin is 0.05625 − 0.045 = 0.01125.
    internal = (await client.get(f"/v1/invoices/{number}?view=internal")).json()
    assert [(x["cost_usd"], x["actual_cost_usd"], x["margin_usd"]) for x in internal["lines"]] == [
        (None, None, None),
        ("0.045", "0.045", "0.01125"),
    ]
    assert internal["cost_usd"] is None

    act = await issue(client, "job-act")
    assert lines_of(act) == [(UNKNOWN, None, 1, "2.201")]
    (line,) = act["lines"]
    assert set(line["unit_prices"].values()) == {None}
    assert {k: v for k, v in line["pricing"].items() if k != "plan_version"} == {
        "plan_id": "actual10",
        "method": "markup",
        "basis": "actual",
        "basis_usd": "2",
        "markup": "0.1",
        "per_request_usd": "0.001",
    }
    assert (act["subtotal_usd"], act["total_usd"], act["unpriced_events"]) == ("2.201", "2.20", 0)
    text = (await client.get(f"/v1/invoices/{act['number']}?format=csv")).text
    (row,) = [r for r in csv.DictReader(io.StringIO(text)) if r["row_type"] == "line"]
    assert row["unit_prices"] == (
        "input no catalog price; output no catalog price; providers' cost 2 USD + 10 %; "
        "plus 0.001 USD per call"
    )
    page = (await client.get(f"/v1/invoices/{act['number']}?format=html")).text
    assert "no catalog price" in page and "providers&#x27; cost 2 USD + 10 %" in page
    internal = (await client.get(f"/v1/invoices/{act['number']}?view=internal")).json()
    # 2.201 − 2 = 0.201
    assert (internal["lines"][0]["actual_cost_usd"], internal["lines"][0]["margin_usd"]) == (
        "2",
        "0.201",
    )
    conn = await asyncpg.connect(database_url)
    try:
        for n in (number, act["number"]):
            stored = await verify_stored(conn, n)
            assert stored.ok, stored.problems
    finally:
        await conn.close()


async def test_a_catalog_price_later_bills_only_the_difference_once(
    client: Any, db: asyncpg.Connection
) -> None:
    await make_plan(client, "actual10", basis="actual", markup="0.10", per_request_usd="0.001")
    await make_customer(client, "beta", plan_id="actual10")
    call = {"model": UNKNOWN, "input_tokens": 1_000, "output_tokens": 100}
    await record_accepted(
        client,
        [
            # Each 2.00 × 1.1 + 0.001 = 2.201 for beta, unpriced by the catalog.
            october("e1", job_id="job-early", customer_id="beta", provider_cost_usd="2.00", **call),
            october("l1", job_id="job-late", customer_id="beta", provider_cost_usd="2.00", **call),
        ],
    )
    first = await issue(client, "job-early")
    assert lines_of(first) == [(UNKNOWN, None, 1, "2.201")]

    # Then beta's terms from October become + 50 % (not re-priced yet), and a catalog
    # version prices the model: re-rating books both calls again, at 2.00 × 1.5 + 0.001
    # = 3.001 (catalog cost 1,000 × 1 + 100 × 4 = 1,400 per 1M = 0.0014).
    await actual10_rising_to_50(client)
    v2 = await catalog_version(client, "2026-09-01T00:00:00Z", 1, UNKNOWN)

    # Billed before: the follow-up takes back the 2.201 and bills 3.001, the difference.
    follow_up = await issue(client, "job-early")
    assert follow_up["follow_up_of"] == first["number"]
    assert lines_of(follow_up) == [(UNKNOWN, None, -1, "-2.201"), (UNKNOWN, v2, 1, "3.001")]
    assert (follow_up["subtotal_usd"], follow_up["total_usd"]) == ("0.8", "0.80")
    assert (follow_up["covered_entries"], follow_up["unpriced_events"]) == (2, 0)
    assert any("take back calls billed before" in n for n in follow_up["notes"])
    assert not any("Lines without a catalog version bill" in n for n in follow_up["notes"])
    # 2.201 + 0.8 = 3.001: the call's price, billed once.
    internal = (await client.get(f"/v1/invoices/{follow_up['number']}?view=internal")).json()
    # The re-booking: catalog cost 0.0014, actual 2 (reported), margin 3.001 − 2 = 1.001.
    assert (
        internal["lines"][1]["cost_usd"],
        internal["lines"][1]["actual_cost_usd"],
        internal["lines"][1]["margin_usd"],
    ) == ("0.0014", "2", "1.001")
    assert verify_document(follow_up).ok

    # Never billed before: its unpriced booking and the reversal net out on one invoice.
    late = await issue(client, "job-late")
    assert lines_of(late) == [(UNKNOWN, v2, 1, "3.001")]
    assert (late["subtotal_usd"], late["total_usd"], late["covered_entries"]) == (
        "3.001",
        "3.00",
        3,
    )
    billed = await db.fetchval(
        "SELECT sum(amount_usd) FROM invoice_lines AS l JOIN invoices AS i "
        "ON i.number = l.invoice_number WHERE i.customer_id = 'beta'"
    )
    assert billed == 2 * await db.fetchval(
        "SELECT sum(price_usd) FROM ledger_entries WHERE job_id = 'job-early'"
    )


async def test_a_monthly_invoice_bills_them_and_its_follow_up_the_difference(
    client: Any, database_url: str
) -> None:
    await make_plan(client, "actual10", basis="actual", markup="0.10", per_request_usd="0.001")
    await make_customer(client, "mon", plan_id="actual10", invoicing="monthly")
    call = {"job_id": "job-m", "customer_id": "mon", "model": UNKNOWN}
    await record_accepted(
        client,
        [
            # 2.00 × 1.1 + 0.001 = 2.201
            october("m1", input_tokens=1_000, output_tokens=100, provider_cost_usd="2.00",
                    **call),
            # No reported cost, no catalog price: unknown for mon too.
            october("m2", input_tokens=1_000, output_tokens=100, **call),
            # 0.045 (catalog) × 1.1 + 0.001 = 0.0505
            october("m3", job_id="job-m", customer_id="mon", model=SONNET,
                    input_tokens=10_000, output_tokens=1_000),
        ],
    )  # fmt: skip
    month = {"month": "2026-10"}
    first = await created(await client.post("/v1/customers/mon/invoices", json=month))
    assert [(x["job_id"], *k) for x, k in zip(first["lines"], lines_of(first), strict=True)] == [
        ("job-m", SONNET, 1, 1, "0.0505"),
        ("job-m", UNKNOWN, None, 1, "2.201"),
    ]
    # 0.0505 + 2.201 = 2.2515 → 2.25
    assert (first["subtotal_usd"], first["total_usd"]) == ("2.2515", "2.25")
    assert (first["covered_entries"], first["unpriced_events"]) == (2, 1)

    await actual10_rising_to_50(client)
    v2 = await catalog_version(client, "2026-09-01T00:00:00Z", 1, UNKNOWN)
    # m1 again at 2.00 × 1.5 + 0.001 = 3.001; m2 priced at last: its catalog cost 0.0014
    # is its actual cost, 0.0014 × 1.5 + 0.001 = 0.0031; one line 3.0041. m1's unpriced
    # booking billed 2.201: taken back.
    follow_up = await created(await client.post("/v1/customers/mon/invoices", json=month))
    assert follow_up["follow_up_of"] == first["number"]
    assert lines_of(follow_up) == [(UNKNOWN, None, -1, "-2.201"), (UNKNOWN, v2, 2, "3.0041")]
    # −2.201 + 3.0041 = 0.8031 → 0.80; covered: m1's reversal and re-booking, m2's
    # unpriced booking, its reversal and its priced booking.
    assert (follow_up["subtotal_usd"], follow_up["total_usd"]) == ("0.8031", "0.80")
    assert (follow_up["covered_entries"], follow_up["unpriced_events"]) == (5, 0)
    conn = await asyncpg.connect(database_url)
    try:
        for n in (first["number"], follow_up["number"]):
            stored = await verify_stored(conn, n)
            assert stored.ok, stored.problems
    finally:
        await conn.close()


async def test_a_call_unpriced_for_one_customer_is_billed_once_its_job_moves_to_one_that_prices_it(
    client: Any,
) -> None:
    await make_plan(client, "markup25", basis="catalog", markup="0.25")
    await make_plan(client, "actual10", basis="actual", markup="0.10", per_request_usd="0.001")
    await make_customer(client, "acme", plan_id="markup25")
    await make_customer(client, "beta", plan_id="actual10")
    await record_accepted(
        client,
        [
            october("x1", job_id="job-x", customer_id="acme", model=UNKNOWN,
                    input_tokens=1_000, output_tokens=100, provider_cost_usd="2.00"),
        ],
    )  # fmt: skip
    # A catalog basis and no catalog cost: unknown for acme, nothing to bill.
    refused = await client.post("/v1/jobs/job-x/invoices")
    assert refused.status_code == 409, refused.text
    assert "1 unpriced events wait" in refused.json()["detail"]
    moved = await client.patch("/v1/jobs/job-x", json={"customer_id": "beta"})
    assert moved.status_code == 200, moved.text
    # Re-priced for beta: 2.00 × 1.1 + 0.001 = 2.201. acme's booking of unknown price and
    # its reversal net out on the same invoice.
    invoice = await issue(client, "job-x")
    assert lines_of(invoice) == [(UNKNOWN, None, 1, "2.201")]
    assert invoice["customer"]["id"] == "beta"
    assert (invoice["covered_entries"], invoice["unpriced_events"]) == (3, 0)
    assert (invoice["subtotal_usd"], invoice["total_usd"]) == ("2.201", "2.20")
