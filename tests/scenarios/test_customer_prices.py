"""What customers pay (SPEC §11), on the ledger, worked out by hand from the AIMS prices.

AIMS prices used here, USD per 1M tokens:
- anthropic/claude-sonnet-4.5: input 3.00, output 15.00, cache read 0.30, cache write
  3.75; from 200,001 input tokens every token at input 6.00, output 22.50, cache read
  0.60, cache write 7.50;
- openai/gpt-5.1: input 3.00, output 12.00;
- google/gemini-3.0-flash: input 0.10, output 0.40.

Every entry carries its price, its customer and the plan version that set the price; every
rollup carries the price; jobs, lines, entries and usage rows show price and margin.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from service.invoices.verify import verify_stored
from tests.support.events import record_accepted, wire_event
from tests.support.ledger_truth import assert_rollups_equal_ledger

D = Decimal
SONNET = "anthropic/claude-sonnet-4.5"
GPT = "openai/gpt-5.1"
FLASH = "google/gemini-3.0-flash"
UNKNOWN = "vendor/not-in-the-catalog"
OCTOBER = "2026-10-01T00:00:00Z"

# Sonnet, 100,000 input (20,000 cached reads, 10,000 cache writes), 10,000 output (2,000
# reasoning): 70,000 × 3 + 20,000 × 0.30 + 10,000 × 3.75 + 8,000 × 15 + 2,000 × 15
# = 210,000 + 6,000 + 37,500 + 120,000 + 30,000 = 403,500 per 1M = 0.4035.
SONNET_CALL = {
    "model": SONNET,
    "input_tokens": 100_000,
    "cached_input_tokens": 20_000,
    "cache_write_tokens": 10_000,
    "output_tokens": 10_000,
    "reasoning_tokens": 2_000,
}
SONNET_COST = D("0.4035")
# Sonnet at long context, 250,000 input (50,000 cached reads), 1,000 output: every token
# at the long rate: 200,000 × 6 + 50,000 × 0.60 + 1,000 × 22.50 = 1,252,500 per 1M.
SONNET_LONG_CALL = {
    "model": SONNET,
    "input_tokens": 250_000,
    "cached_input_tokens": 50_000,
    "output_tokens": 1_000,
}
SONNET_LONG_COST = D("1.2525")
# GPT-5.1, 10,000 input, 1,000 output: 30,000 + 12,000 = 42,000 per 1M = 0.042.
GPT_CALL = {"model": GPT, "input_tokens": 10_000, "output_tokens": 1_000}
GPT_COST = D("0.042")
# Flash, 1,000,000 input, 100,000 output: 0.10 + 0.04 = 0.14.
FLASH_CALL = {"model": FLASH, "input_tokens": 1_000_000, "output_tokens": 100_000}
FLASH_COST = D("0.14")


async def make_plan(client: AsyncTestClient[Any], plan_id: str, **fields: Any) -> dict[str, Any]:
    body = {"id": plan_id, "name": plan_id.title(), "effective_from": OCTOBER, **fields}
    response = await client.post("/v1/plans", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def make_customer(client: AsyncTestClient[Any], customer_id: str, **fields: Any) -> None:
    body = {"id": customer_id, "name": customer_id.title(), **fields}
    response = await client.post("/v1/customers", json=body)
    assert response.status_code == 201, response.text


async def entries(client: AsyncTestClient[Any], job_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/jobs/{job_id}/entries")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def job(client: AsyncTestClient[Any], job_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def money(value: str | None) -> Decimal | None:
    return None if value is None else D(value)


async def test_a_25_percent_markup_on_the_catalog_cost(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    plan = await make_plan(client, "markup25", basis="catalog", markup="0.25")
    await make_customer(client, "acme", plan_id="markup25")
    await record_accepted(
        client,
        [
            wire_event(
                "m1", job_id="job-m", customer_id="acme", provider_cost_usd="0.40", **SONNET_CALL
            )
        ],
    )
    [charge] = await entries(client, "job-m")
    # 0.4035 × 1.25 = 0.504375; the provider reported 0.40: margin 0.104375.
    assert (money(charge["cost_usd"]), money(charge["price_usd"])) == (SONNET_COST, D("0.504375"))
    assert money(charge["actual_cost_usd"]) == D("0.40")
    assert money(charge["margin_usd"]) == D("0.104375")
    version = plan["versions"][0]["id"]
    assert (charge["customer_id"], charge["plan_id"], charge["plan_version"]) == (
        "acme",
        "markup25",
        version,
    )
    found = await job(client, "job-m")
    assert (money(found["price_usd"]), money(found["margin_usd"])) == (
        D("0.504375"),
        D("0.104375"),
    )
    [line] = found["lines"]
    assert (money(line["price_usd"]), money(line["margin_usd"])) == (D("0.504375"), D("0.104375"))
    await assert_rollups_equal_ledger(db)


async def test_an_actual_basis_plan_marks_up_what_the_provider_reported(
    client: AsyncTestClient[Any],
) -> None:
    await make_plan(client, "actual10", basis="actual", markup="0.10", per_request_usd="0.001")
    await make_customer(client, "beta", plan_id="actual10")
    await record_accepted(
        client,
        [
            wire_event(
                "a1", job_id="job-a", customer_id="beta", provider_cost_usd="0.0415", **GPT_CALL
            ),
            # Vertex reports no cost: the actual cost is the catalog's, 0.042.
            wire_event("a2", job_id="job-a", provider="vertex", **GPT_CALL),
        ],
    )
    one, two = await entries(client, "job-a")
    # 0.0415 × 1.10 + 0.001 = 0.04565 + 0.001 = 0.04665; margin 0.04665 − 0.0415 = 0.00515.
    assert (money(one["cost_usd"]), money(one["actual_cost_usd"])) == (GPT_COST, D("0.0415"))
    assert (money(one["price_usd"]), money(one["margin_usd"])) == (D("0.04665"), D("0.00515"))
    # 0.042 × 1.10 + 0.001 = 0.0472; margin 0.0052.
    assert (money(two["price_usd"]), money(two["margin_usd"])) == (D("0.0472"), D("0.0052"))
    assert two["customer_id"] == "beta"  # the job's customer, though the event named none
    found = await job(client, "job-a")
    assert money(found["price_usd"]) == D("0.09385")
    assert money(found["actual_cost_usd"]) == D("0.0835")
    assert money(found["margin_usd"]) == D("0.01035")


async def test_a_plan_s_own_price_for_one_model_cache_and_long_context_and_markup_for_others(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    await make_plan(
        client,
        "own",
        basis="catalog",
        markup="0.5",
        models={
            "anthropic/claude-sonnet-4.5": {
                "input": "2.40",
                "output": "12.00",
                "cache_read": "0.24",
                "cache_write": "3.00",
                "long_context": [
                    {
                        "min_input_tokens": 200_001,
                        "input": "4.80",
                        "output": "18.00",
                        "cache_read": "0.48",
                        "cache_write": "6.00",
                    }
                ],
            }
        },
    )
    await make_customer(client, "gamma", plan_id="own")
    await record_accepted(
        client,
        [
            wire_event("o1", job_id="job-o", customer_id="gamma", **SONNET_CALL),
            wire_event("o2", job_id="job-o", **SONNET_LONG_CALL),
            wire_event("o3", job_id="job-o", **FLASH_CALL),
        ],
    )
    own, long, flash = await entries(client, "job-o")
    # The plan's own Sonnet price, no markup: 70,000 × 2.40 + 20,000 × 0.24 + 10,000 × 3.00
    # + 8,000 × 12 + 2,000 × 12 = 168,000 + 4,800 + 30,000 + 96,000 + 24,000 = 0.3228.
    assert (money(own["cost_usd"]), money(own["price_usd"])) == (SONNET_COST, D("0.3228"))
    # Its long-context entry for every token: 200,000 × 4.80 + 50,000 × 0.48 + 1,000 × 18
    # = 960,000 + 24,000 + 18,000 = 1.002 (the catalog's cost, 1.2525, at its long rate).
    assert (money(long["cost_usd"]), money(long["price_usd"])) == (SONNET_LONG_COST, D("1.002"))
    assert long["long_context_from"] == 200_001
    # Flash is not the plan's: 0.14 × 1.5 = 0.21.
    assert (money(flash["cost_usd"]), money(flash["price_usd"])) == (FLASH_COST, D("0.21"))
    found = await job(client, "job-o")
    assert money(found["price_usd"]) == D("1.5348")  # 0.3228 + 1.002 + 0.21
    # Margin: 1.5348 − (0.4035 + 1.2525 + 0.14) = 1.5348 − 1.796 = −0.2612 (a discount).
    assert money(found["margin_usd"]) == D("-0.2612")
    await assert_rollups_equal_ledger(db)


async def test_an_own_price_without_long_context_bills_long_calls_at_the_catalog_s_long_rate(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    # SPEC §11: a plan's own price, "with the catalog formula (§3, long context included
    # when the catalog entry has it)". This own Sonnet price has no long-context entries of
    # its own (the shape SPEC gives a plan's model price): a call the catalog bills at its
    # long rate (from 200,001 input tokens) is billed at that rate, with the own price's
    # per_request; shorter calls at the own prices.
    await make_plan(
        client,
        "discount",
        basis="catalog",
        markup="0",
        models={SONNET: {"input": "2.40", "output": "12.00", "per_request": "0.001"}},
    )
    await make_customer(client, "zeta", plan_id="discount")
    await record_accepted(
        client,
        [
            wire_event("z1", job_id="job-z", customer_id="zeta", model=SONNET,
                       input_tokens=200_000, output_tokens=1_000),
            wire_event("z2", job_id="job-z", **SONNET_LONG_CALL),
        ],
    )  # fmt: skip
    short, long = await entries(client, "job-z")
    # z1, the own prices (cache reads at input, by the catalog's default rule):
    # 200,000 × 2.40 + 1,000 × 12 = 492,000 per 1M = 0.492, + 0.001 = 0.493.
    assert money(short["price_usd"]) == D("0.493")
    # z2 at the catalog's long rate: 1,252,500 per 1M = 1.2525 (its cost), + 0.001 = 1.2535;
    # at the own base prices it was 200,000 × 2.40 + 50,000 × 2.40 + 1,000 × 12 = 0.612,
    # + 0.001 = 0.613.
    assert (money(long["cost_usd"]), money(long["price_usd"])) == (SONNET_LONG_COST, D("1.2535"))
    found = await job(client, "job-z")
    # Cost 200,000 × 3 + 1,000 × 15 = 0.615 and 1.2525: margin 1.7465 − 1.8675 = −0.121.
    assert (money(found["price_usd"]), money(found["margin_usd"])) == (D("1.7465"), D("-0.121"))
    # The invoice states each line's rate and unit prices: they give its amount.
    response = await client.get("/v1/jobs/job-z/invoice")
    assert response.status_code == 200, response.text
    lines = [
        (
            x["rate"],
            x["unit_prices"]["input"],
            x["unit_prices"]["cache_read"],
            x["unit_prices"]["output"],
            x["unit_prices"]["per_request"],
            x["amount_usd"],
        )
        for x in response.json()["lines"]
    ]
    assert lines == [
        ("base", "2.4", "2.4", "12", "0.001", "0.493"),
        ("long context ≥ 200,001 input tokens", "6", "0.6", "22.5", "0.001", "1.2535"),
    ]
    assert response.json()["subtotal_usd"] == "1.7465"
    await assert_rollups_equal_ledger(db)


async def test_an_unpriced_event_is_unpriced_for_a_catalog_basis_customer_too(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    await make_plan(client, "markup25", basis="catalog", markup="0.25")
    await make_plan(client, "actual10", basis="actual", markup="0.10", per_request_usd="0.001")
    await make_customer(client, "acme", plan_id="markup25")
    await make_customer(client, "beta", plan_id="actual10")
    call = {"model": UNKNOWN, "input_tokens": 1_000, "output_tokens": 100}
    await record_accepted(
        client,
        [
            wire_event(
                "u1", job_id="job-u1", customer_id="acme", provider_cost_usd="0.002", **call
            ),
            wire_event(
                "u2", job_id="job-u2", customer_id="beta", provider_cost_usd="0.002", **call
            ),
        ],
    )
    [acme] = await entries(client, "job-u1")
    assert (acme["cost_usd"], acme["price_usd"], acme["margin_usd"]) == (None, None, None)
    assert (acme["customer_id"], acme["plan_id"]) == ("acme", "markup25")
    # On an actual basis the provider's reported cost is known: 0.002 × 1.1 + 0.001 = 0.0032.
    [beta] = await entries(client, "job-u2")
    assert (beta["cost_usd"], money(beta["price_usd"])) == (None, D("0.0032"))
    listed = (await client.get("/v1/unpriced")).json()["items"]
    assert [(i["id"], i["customer_id"], money(i["price_usd"])) for i in listed] == [
        ("u1", "acme", None),  # unpriced for the customer too
        ("u2", "beta", D("0.0032")),
    ]
    only_acme = (await client.get("/v1/unpriced", params={"customer_id": "acme"})).json()
    assert [i["id"] for i in only_acme["items"]] == ["u1"]
    # The job line of an unpriced event knows no price, as it knows no cost.
    [line] = (await job(client, "job-u1"))["lines"]
    assert (line["cost_usd"], line["price_usd"], line["margin_usd"]) == (None, None, None)
    await assert_rollups_equal_ledger(db)


async def test_without_a_customer_or_a_plan_the_price_is_the_catalog_cost(
    client: AsyncTestClient[Any],
) -> None:
    await make_customer(client, "planless")
    await record_accepted(
        client,
        [
            wire_event("n1", job_id="job-n1", **FLASH_CALL),
            wire_event("n2", job_id="job-n2", customer_id="planless", **FLASH_CALL),
        ],
    )
    for job_id, customer in (("job-n1", None), ("job-n2", "planless")):
        [charge] = await entries(client, job_id)
        assert money(charge["price_usd"]) == FLASH_COST
        assert (charge["customer_id"], charge["plan_id"], charge["plan_version"]) == (
            customer,
            None,
            None,
        )


async def test_an_event_on_each_side_of_a_plan_version_boundary_gets_each_version_s_price(
    client: AsyncTestClient[Any],
) -> None:
    await make_plan(client, "tiered", basis="catalog", markup="0.25")
    added = await client.post(
        "/v1/plans/tiered/versions",
        json={"effective_from": "2026-11-01T00:00:00Z", "basis": "catalog", "markup": "0.30"},
    )
    assert added.status_code == 201, added.text
    await make_customer(client, "acme", plan_id="tiered")
    await record_accepted(
        client,
        [
            wire_event(
                "b1",
                job_id="job-b",
                customer_id="acme",
                occurred_at="2026-10-31T23:59:59.999999Z",
                **FLASH_CALL,
            ),
            wire_event("b2", job_id="job-b", occurred_at="2026-11-01T00:00:00Z", **FLASH_CALL),
        ],
    )
    before, after = await entries(client, "job-b")
    assert money(before["price_usd"]) == D("0.175")  # 0.14 × 1.25
    assert money(after["price_usd"]) == D("0.182")  # 0.14 × 1.30
    assert after["plan_version"] == added.json()["id"] != before["plan_version"]
    # The customer × month rollup, by usage: October and November apart.
    rows = (
        await client.get(
            "/v1/usage",
            params={
                "group_by": "customer",
                "from": "2026-11-01T00:00:00Z",
                "to": "2026-12-01T00:00:00Z",
            },
        )
    ).json()["rows"]
    assert [(r["customer"], money(r["price_usd"]), r["events"]) for r in rows] == [
        ("acme", D("0.182"), 1)
    ]


async def test_a_plan_s_own_long_context_threshold_splits_invoice_lines_by_the_plan_s_rate(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    # SPEC §4: one unit price per invoice line. The plan's own Sonnet price reaches its
    # long rate from 100,001 input tokens, the catalog's from 200,001: a call of 150,000
    # is at the catalog's base rate but the plan's long one.
    await make_plan(
        client,
        "early-long",
        basis="catalog",
        markup="0",
        models={
            SONNET: {
                "input": "4",
                "output": "20",
                "long_context": [{"min_input_tokens": 100_001, "input": "8", "output": "40"}],
            }
        },
    )
    await make_customer(client, "delta", plan_id="early-long")
    call = {"model": SONNET, "job_id": "job-t", "customer_id": "delta", "output_tokens": 1_000}
    await record_accepted(
        client,
        [
            wire_event("t1", input_tokens=100_000, **call),
            wire_event("t2", input_tokens=150_000, **call),
            wire_event("t3", input_tokens=250_000, **call),
        ],
    )
    # t1, plan base: 100,000 × 4 + 1,000 × 20 = 420,000 per 1M = 0.42.
    # t2, plan long: 150,000 × 8 + 1,000 × 40 = 1,240,000 per 1M = 1.24.
    # t3, plan long (catalog long too): 250,000 × 8 + 1,000 × 40 = 2,040,000 = 2.04.
    # Internally each line keeps its entries' catalog costs: t1 100,000 × 3 + 1,000 × 15
    # = 0.315; t2 150,000 × 3 + 1,000 × 15 = 0.465 and t3 250,000 × 6 + 1,000 × 22.50
    # = 1.5225, together 1.9875.
    response = await client.get("/v1/jobs/job-t/invoice")
    assert response.status_code == 200, response.text
    invoice = response.json()
    assert invoice["subtotal_usd"] == "3.7"
    lines = [
        (
            x["events"],
            x["input_tokens"],
            x["rate"],
            x["unit_prices"]["input"],
            x["unit_prices"]["output"],
            x["amount_usd"],
        )
        for x in invoice["lines"]
    ]
    long_rate = "long context ≥ 100,001 input tokens"
    # t2 and t3 are at the catalog's base and long rates, at one rate of the plan: one line.
    assert lines == [
        (1, 100_000, "base", "4", "20", "0.42"),
        (2, 400_000, long_rate, "8", "40", "3.28"),
    ]
    response = await client.post("/v1/jobs/job-t/invoices")
    assert response.status_code == 201, response.text
    issued = response.json()
    assert [x["unit_prices"] for x in issued["lines"]] == [
        x["unit_prices"] for x in invoice["lines"]
    ]
    assert (await verify_stored(db, issued["number"])).problems == []
    response = await client.get(f"/v1/invoices/{issued['number']}?view=internal")
    assert response.status_code == 200, response.text
    assert [x["cost_usd"] for x in response.json()["lines"]] == ["0.315", "1.9875"]
    # Each line's amount is its tokens at its unit prices, as printed.
    for x in issued["lines"]:
        prices = x["unit_prices"]
        assert D(x["amount_usd"]) * 1_000_000 == D(x["input_tokens"]) * D(prices["input"]) + D(
            x["output_tokens"]
        ) * D(prices["output"])
