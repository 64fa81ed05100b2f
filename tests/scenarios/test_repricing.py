"""Re-pricing by adjustments (SPEC §11): the price moves, the cost never does.

- a plan version effective in the past reaches past events through
  ``POST /v1/plans/{id}/reprice`` (and its dry run), once: a second run appends nothing;
  an invoice issued before stays as it was;
- a job's customer set after it has entries (by a PATCH, or by its first event naming one)
  re-prices the job at once, moving its events from no customer to the customer;
- ``LUC_DEFAULT_PLAN`` prices jobs without a customer, and customers without a plan.

Money by hand: google/gemini-3.0-flash at 0.10 / 0.40 USD per 1M tokens; a call of
1,000,000 input and 100,000 output tokens costs 0.10 + 0.04 = 0.14.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.catalog.service import load_catalog
from service.customers.models import NewPlanVersion
from service.customers.plans import create_plan
from service.db import connect
from service.recording.repricing import reprice_plan
from tests.scenarios.test_customer_prices import (
    FLASH_CALL,
    FLASH_COST,
    entries,
    job,
    make_customer,
    make_plan,
    money,
)
from tests.support.clock import clear_of_end, earlier_this_month, month_start
from tests.support.events import record_accepted, wire_event
from tests.support.ledger_truth import assert_rollups_equal_ledger
from tests.support.settings import settings_for

D = Decimal


async def test_a_past_effective_version_re_prices_by_adjustments_once_and_leaves_invoices(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    await make_plan(client, "tiered", basis="catalog", markup="0.25")  # from 2026-10-01
    await make_customer(client, "acme", plan_id="tiered")
    await record_accepted(
        client,
        [
            wire_event(
                "p1",
                job_id="job-p",
                customer_id="acme",
                occurred_at="2026-10-10T12:00:00Z",
                **FLASH_CALL,
            ),
            wire_event("p2", job_id="job-p", occurred_at="2026-10-20T12:00:00Z", **FLASH_CALL),
            wire_event("q1", job_id="job-q", occurred_at="2026-10-20T12:00:00Z", **FLASH_CALL),
        ],
    )
    # An invoice of job-p, issued before the correction (it bills the catalog cost).
    issued = await client.post("/v1/jobs/job-p/invoices")
    assert issued.status_code == 201, issued.text
    invoice = issued.json()
    # A version effective in the past: 40 % from 2026-10-15.
    added = await client.post(
        "/v1/plans/tiered/versions",
        json={"effective_from": "2026-10-15T00:00:00Z", "basis": "catalog", "markup": "0.40"},
    )
    assert added.status_code == 201, added.text
    # New usage is priced by it at once; past usage waits for the re-pricing.
    assert money((await entries(client, "job-p"))[1]["price_usd"]) == D("0.175")

    body = {"since": "2026-10-01T00:00:00Z", "dry_run": True}
    dry = (await client.post("/v1/plans/tiered/reprice", json=body)).json()
    # p2 moves from 0.14 × 1.25 = 0.175 to 0.14 × 1.40 = 0.196: +0.021; p1 (before the new
    # version) keeps its price; q1 (no customer) is no customer of the plan's.
    assert (dry["events_examined"], dry["events_changed"], dry["entries_appended"]) == (2, 1, 0)
    assert money(dry["price_delta_usd"]) == D("0.021")
    assert dry["customers"] == [{"customer_id": "acme", "events": 1, "price_delta_usd": "0.021"}]
    assert dry["jobs"] == [{"job_id": "job-p", "events": 1, "price_delta_usd": "0.021"}]
    assert len(await entries(client, "job-p")) == 2  # a dry run writes nothing

    done = (await client.post("/v1/plans/tiered/reprice", json={**body, "dry_run": False})).json()
    assert (done["events_changed"], done["entries_appended"]) == (1, 1)
    _, _, change = await entries(client, "job-p")
    # The change of price alone: no event, no token, no cost; the new version named.
    assert change["event_id"] == "p2" and change["kind"] == "adjustment"
    assert (change["events"], change["input_tokens"], money(change["cost_usd"])) == (0, 0, D(0))
    assert money(change["price_usd"]) == D("0.021")
    assert (change["customer_id"], change["plan_version"]) == ("acme", added.json()["id"])
    found = await job(client, "job-p")
    assert money(found["cost_usd"]) == 2 * FLASH_COST  # the cost never moves
    assert money(found["price_usd"]) == D("0.371")  # 0.175 + 0.196

    again = (await client.post("/v1/plans/tiered/reprice", json={**body, "dry_run": False})).json()
    assert (again["events_changed"], again["entries_appended"]) == (0, 0)
    assert len(await entries(client, "job-p")) == 3

    # The issued invoice is exactly as it was.
    assert (await client.get(f"/v1/invoices/{invoice['number']}")).json() == invoice
    await assert_rollups_equal_ledger(db)


async def test_re_pricing_errors_are_precise(client: AsyncTestClient[Any]) -> None:
    missing = await client.post("/v1/plans/ghost/reprice", json={"since": "2026-10-01T00:00:00Z"})
    assert missing.status_code == 404
    assert "ghost" in missing.json()["detail"]
    await make_plan(client, "tiered", basis="catalog", markup="0.25")
    bad = await client.post("/v1/plans/tiered/reprice", json={"since": "yesterday"})
    assert bad.status_code == 422
    assert "since" in bad.json()["detail"]


async def test_a_customer_changing_plan_reaches_past_entries_through_the_new_plan_s_reprice(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    await make_plan(client, "markup25", basis="catalog", markup="0.25")
    await make_plan(client, "markup50", basis="catalog", markup="0.5")
    await make_customer(client, "acme", plan_id="markup25")
    await record_accepted(
        client, [wire_event("c1", job_id="job-c", customer_id="acme", **FLASH_CALL)]
    )
    changed = await client.patch("/v1/customers/acme", json={"plan_id": "markup50"})
    assert changed.status_code == 200, changed.text
    done = (
        await client.post("/v1/plans/markup50/reprice", json={"since": "2026-01-01T00:00:00Z"})
    ).json()
    # 0.14 × 1.25 = 0.175 → 0.14 × 1.5 = 0.21: +0.035.
    assert done["customers"] == [{"customer_id": "acme", "events": 1, "price_delta_usd": "0.035"}]
    assert money((await job(client, "job-c"))["price_usd"]) == D("0.21")
    # The plan it left finds nothing more to do.
    left = (
        await client.post("/v1/plans/markup25/reprice", json={"since": "2026-01-01T00:00:00Z"})
    ).json()
    assert (left["events_examined"], left["events_changed"]) == (1, 0)
    await assert_rollups_equal_ledger(db)


async def test_setting_a_job_s_customer_after_its_entries_re_prices_it_at_once(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    await make_plan(client, "markup25", basis="catalog", markup="0.25")
    await make_customer(client, "acme", plan_id="markup25")
    await make_customer(client, "globex")  # no plan: the catalog cost
    await record_accepted(
        client,
        [
            wire_event("s1", job_id="job-s", **FLASH_CALL),
            wire_event("s2", job_id="job-s", **FLASH_CALL),
        ],
    )
    assert money((await job(client, "job-s"))["price_usd"]) == 2 * FLASH_COST

    patched = await client.patch("/v1/jobs/job-s", json={"customer_id": "acme"})
    assert patched.status_code == 200, patched.text
    found = await job(client, "job-s")
    assert (money(found["cost_usd"]), money(found["price_usd"])) == (D("0.28"), D("0.35"))
    after = await entries(client, "job-s")
    # Each event: a reversal for no customer at 0.14, a new booking for acme at 0.175.
    moved = [(e["event_id"], e["events"], e["customer_id"], e["price_usd"]) for e in after[2:]]
    assert sorted(moved) == [
        ("s1", -1, None, "-0.14"),
        ("s1", 1, "acme", "0.175"),
        ("s2", -1, None, "-0.14"),
        ("s2", 1, "acme", "0.175"),
    ]
    # Per customer and month: the usage moved from no customer to acme, cost and all.
    rows = (await client.get("/v1/usage", params={"group_by": "customer"})).json()["rows"]
    assert [
        (r["customer"], r["events"], money(r["cost_usd"]), money(r["price_usd"])) for r in rows
    ] == [("acme", 2, D("0.28"), D("0.35"))]

    # Changed again: to a customer without a plan, back to the catalog cost.
    assert (await client.patch("/v1/jobs/job-s", json={"customer_id": "globex"})).status_code == 200
    assert money((await job(client, "job-s"))["price_usd"]) == D("0.28")
    # The same customer again: nothing to re-price.
    count = len(await entries(client, "job-s"))
    assert (await client.patch("/v1/jobs/job-s", json={"customer_id": "globex"})).status_code == 200
    assert len(await entries(client, "job-s")) == count
    await assert_rollups_equal_ledger(db)


async def test_a_job_s_first_event_naming_a_customer_re_prices_what_it_recorded_before(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    await make_plan(client, "markup25", basis="catalog", markup="0.25")
    await make_customer(client, "acme", plan_id="markup25")
    await record_accepted(client, [wire_event("f1", job_id="job-f", **FLASH_CALL)])
    await record_accepted(
        client, [wire_event("f2", job_id="job-f", customer_id="acme", **FLASH_CALL)]
    )
    found = await job(client, "job-f")
    assert found["customer_id"] == "acme"
    assert money(found["price_usd"]) == D("0.35")  # both events at 0.175
    await assert_rollups_equal_ledger(db)


async def test_the_customer_shows_its_month_to_date_price_actual_cost_and_margin(
    client: AsyncTestClient[Any],
) -> None:
    await make_plan(client, "markup25", basis="catalog", markup="0.25")
    await make_customer(client, "acme", plan_id="markup25")
    now = await clear_of_end("month")  # the month it records in is the one it reads
    this_month = month_start(now)
    when = earlier_this_month(now)
    await record_accepted(
        client,
        [
            wire_event(
                "t1",
                job_id="job-t",
                customer_id="acme",
                occurred_at=when.isoformat(),
                provider_cost_usd="0.13",
                **FLASH_CALL,
            ),
            # Last month's usage is not this month's.
            wire_event(
                "t0",
                job_id="job-t",
                occurred_at=(this_month - timedelta(days=3)).isoformat(),
                **FLASH_CALL,
            ),
        ],
    )
    customer = (await client.get("/v1/customers/acme")).json()
    assert customer["month"] == this_month.strftime("%Y-%m")
    # 0.14 × 1.25 = 0.175, against the 0.13 the provider reported.
    assert (customer["price_usd"], customer["actual_cost_usd"], customer["margin_usd"]) == (
        "0.175",
        "0.13",
        "0.045",
    )
    assert customer["credit_balance_usd"] == "0"  # no prepaid credits granted
    listed = (await client.get("/v1/customers")).json()["items"]
    assert [(c["id"], c["price_usd"]) for c in listed] == [("acme", "0.175")]
    await make_customer(client, "idle")
    idle = (await client.get("/v1/customers/idle")).json()
    assert (idle["price_usd"], idle["actual_cost_usd"], idle["margin_usd"]) == ("0", "0", "0")


@pytest.fixture
async def house_client(database_url: str) -> AsyncIterator[AsyncTestClient[Any]]:
    """LUC with ``LUC_DEFAULT_PLAN=house``: 10 % over the catalog cost, from 2026-01-01."""
    conn = await connect(database_url)  # LUC's codecs: jsonb and numeric as LUC reads them
    try:
        first = NewPlanVersion(
            effective_from=datetime(2026, 1, 1, tzinfo=UTC), basis="catalog", markup=D("0.10")
        )
        await create_plan(conn, "house", "House", first, await load_catalog(conn))
    finally:
        await conn.close()
    app = create_app(settings_for(database_url, LUC_DEFAULT_PLAN="house"))
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


async def test_luc_default_plan_prices_jobs_without_a_customer_and_customers_without_a_plan(
    house_client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    client = house_client
    await make_plan(client, "markup25", basis="catalog", markup="0.25")
    await make_customer(client, "acme", plan_id="markup25")
    await make_customer(client, "planless")
    await record_accepted(
        client,
        [
            wire_event("d1", job_id="job-none", **FLASH_CALL),
            wire_event("d2", job_id="job-planless", customer_id="planless", **FLASH_CALL),
            wire_event("d3", job_id="job-acme", customer_id="acme", **FLASH_CALL),
        ],
    )
    # 0.14 × 1.10 = 0.154 under the default plan; acme's own plan: 0.14 × 1.25 = 0.175.
    for job_id, price, plan in (
        ("job-none", "0.154", "house"),
        ("job-planless", "0.154", "house"),
        ("job-acme", "0.175", "markup25"),
    ):
        [charge] = await entries(client, job_id)
        assert (charge["price_usd"], charge["plan_id"]) == (price, plan), job_id
    # Re-pricing the default plan reaches jobs without a customer or plan: a version of 20 %
    # from 2026-11-01 re-prices them (+0.014 each), not acme's.
    added = await client.post(
        "/v1/plans/house/versions",
        json={"effective_from": "2026-11-01T00:00:00Z", "basis": "catalog", "markup": "0.20"},
    )
    assert added.status_code == 201, added.text
    done = (
        await client.post("/v1/plans/house/reprice", json={"since": "2026-11-01T00:00:00Z"})
    ).json()
    assert done["customers"] == [
        {"customer_id": None, "events": 1, "price_delta_usd": "0.014"},
        {"customer_id": "planless", "events": 1, "price_delta_usd": "0.014"},
    ]
    assert money((await job(client, "job-none"))["price_usd"]) == D("0.168")
    await assert_rollups_equal_ledger(db)


async def test_the_readme_worked_example_holds_to_the_last_digit(
    client: AsyncTestClient[Any],
) -> None:
    """README, Customers and rate plans: plan growth, customer initech, job job-7."""
    at = "2026-11-10T10:00:00Z"
    await record_accepted(
        client,
        [
            wire_event(
                f"w{n}", job_id="job-7", occurred_at=at, provider_cost_usd="0.13", **FLASH_CALL
            )
            for n in (1, 2)
        ],
    )
    await make_plan(client, "growth", basis="catalog", markup="0.20")  # from 2026-10-01
    await make_customer(client, "initech", plan_id="growth")
    assert (
        await client.patch("/v1/jobs/job-7", json={"customer_id": "initech"})
    ).status_code == 200
    found = await job(client, "job-7")
    assert (found["cost_usd"], found["price_usd"], found["margin_usd"]) == (
        "0.28",
        "0.336",
        "0.076",
    )
    added = await client.post(
        "/v1/plans/growth/versions",
        json={"effective_from": "2026-11-01T00:00:00Z", "basis": "catalog", "markup": "0.30"},
    )
    assert added.status_code == 201, added.text
    body = {"since": "2026-11-01T00:00:00Z", "dry_run": True}
    dry = (await client.post("/v1/plans/growth/reprice", json=body)).json()
    assert (dry["events_changed"], dry["price_delta_usd"]) == (2, "0.028")
    assert dry["customers"] == [{"customer_id": "initech", "events": 2, "price_delta_usd": "0.028"}]
    assert dry["jobs"] == [{"job_id": "job-7", "events": 2, "price_delta_usd": "0.028"}]
    done = (await client.post("/v1/plans/growth/reprice", json={**body, "dry_run": False})).json()
    assert done["entries_appended"] == 2
    assert [e["price_usd"] for e in (await entries(client, "job-7"))[-2:]] == ["0.014", "0.014"]
    again = (await client.post("/v1/plans/growth/reprice", json={**body, "dry_run": False})).json()
    assert again["entries_appended"] == 0
    # The customer × month rollup, as GET /v1/customers/{id} reads it in November 2026.
    rows = (
        await client.get(
            "/v1/usage",
            params={
                "group_by": "customer",
                "customer_id": "initech",
                "from": "2026-11-01T00:00:00Z",
                "to": "2026-12-01T00:00:00Z",
            },
        )
    ).json()["rows"]
    assert [(r["price_usd"], r["actual_cost_usd"], r["margin_usd"]) for r in rows] == [
        ("0.364", "0.26", "0.104")
    ]


async def test_catalog_re_rating_moves_the_price_where_the_plan_s_basis_moved(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    await make_plan(client, "markup25", basis="catalog", markup="0.25")
    await make_plan(client, "actual10", basis="actual", markup="0.10")
    await make_customer(client, "acme", plan_id="markup25")
    await make_customer(client, "beta", plan_id="actual10")
    at = "2026-11-10T10:00:00Z"
    await record_accepted(
        client,
        [
            wire_event("k1", job_id="job-k1", customer_id="acme", occurred_at=at, **FLASH_CALL),
            wire_event(
                "k2",
                job_id="job-k2",
                customer_id="beta",
                occurred_at=at,
                provider_cost_usd="0.13",
                **FLASH_CALL,
            ),
        ],
    )
    # A correction: Flash's output at 0.50 from 2026-11-01: 0.10 + 0.05 = 0.15 a call.
    version = await client.post(
        "/v1/catalog/versions",
        json={
            "effective_from": "2026-11-01T00:00:00Z",
            "parent": 1,
            "models": [
                {
                    "id": "google/gemini-3.0-flash",
                    "name": "Gemini 3.0 Flash",
                    "tier": "fast",
                    "input": "0.10",
                    "output": "0.50",
                    "cache_read": "0.01",
                }
            ],
        },
    )
    assert version.status_code == 201, version.text
    rerated = (
        await client.post("/v1/catalog/rerate", json={"since": "2026-11-01T00:00:00Z"})
    ).json()
    # acme's price follows its basis, the catalog cost: 0.175 → 0.15 × 1.25 = 0.1875
    # (+0.0125); beta's basis is the 0.13 OpenRouter reported, which does not move.
    assert (rerated["events_changed"], rerated["delta_usd"], rerated["price_delta_usd"]) == (
        2,
        "0.02",
        "0.0125",
    )
    assert (await job(client, "job-k1"))["price_usd"] == "0.1875"
    assert (await job(client, "job-k2"))["price_usd"] == "0.143"  # 0.13 × 1.10
    await assert_rollups_equal_ledger(db)


async def test_re_pricing_in_pages_reaches_the_plan_s_events_among_others_at_one_instant(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    """Pages of two events, most ending inside an instant that events of the plan's
    customer, of a customer that left the plan and of a job without one share."""
    await make_plan(client, "growth", basis="catalog", markup="0.25")  # from 2026-10-01
    await make_plan(client, "basic", basis="catalog", markup="0.10")
    await make_customer(client, "acme", plan_id="growth")
    await make_customer(client, "beta", plan_id="growth")
    at, later = "2026-10-10T12:00:00Z", "2026-10-11T12:00:00Z"
    flash = {"model": FLASH_CALL["model"]}
    # Costs at 0.10 / 0.40 per 1M: a1 0.14, a2 0.24, b1 0.10, b2 0.40, n1 0.14, a3 0.07.
    calls = [
        ("a1", "job-a", "acme", at, 1_000_000, 100_000),
        ("a2", "job-a", "acme", at, 2_000_000, 100_000),
        ("b1", "job-b", "beta", at, 1_000_000, 0),
        ("b2", "job-b", "beta", at, 0, 1_000_000),
        ("n1", "job-n", None, at, 1_000_000, 100_000),
        ("a3", "job-a", "acme", later, 500_000, 50_000),
    ]
    await record_accepted(
        client,
        [
            wire_event(
                event_id,
                job_id=job_id,
                occurred_at=occurred_at,
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                **({"customer_id": customer} if customer else {}),
                **flash,
            )
            for event_id, job_id, customer, occurred_at, input_tokens, output_tokens in calls
        ],
    )
    # Beta leaves the plan (its events stay priced by growth until a re-pricing), and
    # growth's markup becomes 50 % from the start.
    moved = await client.patch("/v1/customers/beta", json={"plan_id": "basic"})
    assert moved.status_code == 200, moved.text
    added = await client.post(
        "/v1/plans/growth/versions",
        json={"effective_from": "2026-10-01T00:00:00Z", "basis": "catalog", "markup": "0.5"},
    )
    assert added.status_code == 201, added.text
    before = await db.fetchval("SELECT count(*) FROM ledger_entries")

    since = datetime(2026, 10, 1, tzinfo=UTC)
    for dry_run in (True, False):
        done = await reprice_plan(db, "growth", since, default_plan=None, dry_run=dry_run, chunk=2)
        # acme: (0.14 + 0.24 + 0.07) × (1.5 − 1.25) = 0.45 × 0.25 = 0.1125; beta, brought to
        # basic: (0.10 + 0.40) × (1.10 − 1.25) = −0.075. n1 is no customer's of the plan.
        assert (done.events_examined, done.events_changed) == (5, 5)
        # For the same customer, one entry per event: the change of price alone.
        assert done.entries_appended == (0 if dry_run else 5)
        assert done.price_delta_usd == D("0.0375")
        assert {c: (d.events, d.price_delta_usd) for c, d in done.customers.items()} == {
            "acme": (3, D("0.1125")),
            "beta": (2, D("-0.075")),
        }
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == before + 5
    assert money((await job(client, "job-a"))["price_usd"]) == D("0.675")  # 0.45 × 1.5
    assert money((await job(client, "job-b"))["price_usd"]) == D("0.55")  # 0.50 × 1.10
    assert money((await job(client, "job-n"))["price_usd"]) == D("0.14")  # the cost
    await assert_rollups_equal_ledger(db)

    again = await reprice_plan(db, "growth", since, default_plan=None, dry_run=False, chunk=2)
    # Beta's events name growth still (their entries of before): examined, unchanged.
    assert (again.events_examined, again.events_changed, again.entries_appended) == (5, 0, 0)
