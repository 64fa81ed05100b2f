"""Budgets by customer and by measure (SPEC §6): scope ``customer`` counts the entries priced
for the customer (its jobs' events), and ``measure`` is what a budget counts: ``cost`` (the
catalog's list price, the default), ``actual_cost`` or ``price``. On creation (the spend
already on the ledger), at each batch (threshold alerts), in the check and in reservations.

Money by hand: google/gemini-3.0-flash at 0.10 / 0.40 USD per 1M tokens; a call of
1,000,000 input and 100,000 output tokens costs 0.10 + 0.04 = 0.14. Customer acme's plan
adds 25 %: 0.175 a call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.scenarios.test_customer_prices import FLASH_CALL, make_customer, make_plan
from tests.support.clock import clear_of_end, earlier_this_month
from tests.support.events import record_accepted, wire_event

D = Decimal


async def budget(client: AsyncTestClient[Any], **fields: Any) -> dict[str, Any]:
    body = {"period": "month", "thresholds": [0.5, 1.0], **fields}
    response = await client.post("/v1/budgets", json=body)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result


async def acme(client: AsyncTestClient[Any]) -> None:
    await make_plan(client, "markup25", basis="catalog", markup="0.25")
    await make_customer(client, "acme", plan_id="markup25")


@pytest.fixture(autouse=True)
async def clear_of_month_end() -> AsyncIterator[None]:
    """The budgets here are month budgets, and their spend is this month's: each test runs
    clear of a UTC month's end, so its calls and the checks that count them share a month."""
    await clear_of_end("month")
    yield


def call(event_id: str, job_id: str = "job-1", **fields: Any) -> dict[str, Any]:
    """A Flash call of the current UTC month (a month budget counts it)."""
    occurred_at = earlier_this_month(datetime.now(UTC)).isoformat()
    return wire_event(event_id, job_id=job_id, occurred_at=occurred_at, **{**FLASH_CALL, **fields})


async def test_a_customer_budget_counts_its_jobs_in_each_measure_from_the_ledger_on(
    client: AsyncTestClient[Any],
) -> None:
    await acme(client)
    await record_accepted(
        client,
        [
            call("c1", customer_id="acme", provider_cost_usd="0.12"),
            call("c2", job_id="job-2", customer_id="acme"),
            call("x1", job_id="job-other"),  # no customer: counts towards none of these
        ],
    )
    # Created after the usage: the spend on the ledger counts.
    cost = await budget(client, scope="customer", scope_id="acme", limit_usd="1")
    actual = await budget(
        client, scope="customer", scope_id="acme", limit_usd="1", measure="actual_cost"
    )
    price = await budget(client, scope="customer", scope_id="acme", limit_usd="1", measure="price")
    assert (cost["measure"], actual["measure"], price["measure"]) == (
        "cost",
        "actual_cost",
        "price",
    )
    check = (await client.get("/v1/budgets/check", params={"job_id": "job-1"})).json()
    spent = {b["id"]: (b["measure"], b["spent_usd"]) for b in check["budgets"]}
    # cost 0.14 + 0.14; actual 0.12 (reported) + 0.14; price 0.175 + 0.175.
    assert spent == {
        cost["id"]: ("cost", "0.28"),
        actual["id"]: ("actual_cost", "0.26"),
        price["id"]: ("price", "0.35"),
    }


async def test_a_price_budget_alerts_on_the_price_and_a_cost_budget_on_the_cost(
    client: AsyncTestClient[Any],
) -> None:
    await acme(client)
    price = await budget(
        client, scope="customer", scope_id="acme", limit_usd="0.35", measure="price"
    )
    cost = await budget(client, scope="customer", scope_id="acme", limit_usd="0.56")
    await record_accepted(client, [call("a1", customer_id="acme")])
    # 0.175 of 0.35 in price: 50 %; 0.14 of 0.56 in cost: 25 %, nothing.
    alerts = (await client.get("/v1/alerts")).json()["items"]
    assert [(a["budget_id"], a["threshold"], a["spent_usd"], a["measure"]) for a in alerts] == [
        (price["id"], 0.5, "0.175", "price")
    ]
    await record_accepted(client, [call("a2", customer_id="acme")])
    alerts = (await client.get("/v1/alerts")).json()["items"]
    assert [(a["budget_id"], a["threshold"], a["spent_usd"]) for a in alerts] == [
        (price["id"], 0.5, "0.175"),
        (price["id"], 1.0, "0.35"),
        (cost["id"], 0.5, "0.28"),
    ]


async def test_re_pricing_moves_a_price_budget_s_spend_and_not_a_cost_budget_s(
    client: AsyncTestClient[Any],
) -> None:
    await acme(client)
    await record_accepted(client, [call("r1"), call("r2")])  # no customer yet
    price = await budget(client, scope="customer", scope_id="acme", limit_usd="1", measure="price")
    cost = await budget(client, scope="customer", scope_id="acme", limit_usd="1")
    assert (await client.patch("/v1/jobs/job-1", json={"customer_id": "acme"})).status_code == 200
    check = (await client.get("/v1/budgets/check", params={"customer_id": "acme"})).json()
    spent = {b["id"]: b["spent_usd"] for b in check["budgets"]}
    assert spent == {price["id"]: "0.35", cost["id"]: "0.28"}


async def test_a_reservation_holds_the_estimate_as_the_customer_s_plan_prices_it(
    client: AsyncTestClient[Any],
) -> None:
    await acme(client)
    await record_accepted(client, [call("h1", customer_id="acme")])  # the job is acme's
    await budget(
        client, scope="customer", scope_id="acme", limit_usd="0.50", measure="price", hard=True
    )
    # An estimate of 0.20 at list price is 0.25 at acme's price: 0.175 + 0.25 = 0.425 ≤ 0.50.
    body = {"job_id": "job-1", "agent": "ACHEEVY", "model": "gemini-3.0-flash"}
    held = await client.post(
        "/v1/budgets/reservations", json={**body, "estimated_cost_usd": "0.20"}
    )
    assert held.status_code == 201, held.text
    [standing] = held.json()["budgets"]
    assert (standing["measure"], standing["reserved_usd"], standing["remaining_usd"]) == (
        "price",
        "0.25",
        "0.075",
    )
    # 0.08 at list price is 0.10 at acme's: more than the 0.075 left.
    refused = await client.post(
        "/v1/budgets/reservations", json={**body, "estimated_cost_usd": "0.08"}
    )
    assert refused.status_code == 402, refused.text
    # A look says the same, for the customer named.
    check = await client.get(
        "/v1/budgets/check",
        params={"customer_id": "acme", "estimated_cost_usd": "0.08", "model": "gemini-3.0-flash"},
    )
    assert check.json()["allowed"] is False
    # Said in the budget's own measure: "0.075 USD left" beside a refused 0.08 read as a
    # contradiction without the price the estimate comes to.
    assert check.json()["reason"].endswith(
        "has 0.075 USD left of 0.5; it counts the customer's price, at which the call's "
        "estimate is 0.1 USD"
    )


async def test_budget_measures_and_scopes_are_refused_precisely(
    client: AsyncTestClient[Any],
) -> None:
    bad = await client.post(
        "/v1/budgets",
        json={
            "scope": "customer",
            "scope_id": "acme",
            "period": "month",
            "limit_usd": "1",
            "measure": "revenue",
        },
    )
    assert bad.status_code == 422
    assert "measure: 'revenue' is not one of cost, actual_cost, price" in bad.json()["detail"]
    no_id = await client.post(
        "/v1/budgets", json={"scope": "customer", "period": "month", "limit_usd": "1"}
    )
    assert no_id.status_code == 422
    assert "scope_id: required for a budget of scope 'customer'" in no_id.json()["detail"]


async def test_a_call_naming_another_customer_than_its_job_s_is_refused_not_counted_elsewhere(
    client: AsyncTestClient[Any],
) -> None:
    # job-1 is acme's, and acme's hard budget of 0.10 is spent (0.175 at its price). Naming
    # globex for job-1 used to count globex's budgets (none) and admit the call, whose usage
    # the ledger then refuses (an event naming another customer than its job's): a call
    # paid for and never billed, past acme's hard budget. The call is refused, naming both.
    await acme(client)
    await make_customer(client, "globex")
    await record_accepted(client, [call("g1", customer_id="acme")])
    await budget(
        client, scope="customer", scope_id="acme", limit_usd="0.10", measure="price", hard=True
    )
    body = {"job_id": "job-1", "agent": "ACHEEVY", "model": "gemini-3.0-flash"}
    expected = (
        "customer_id: job 'job-1' belongs to customer 'acme', and this call names customer "
        "'globex'; a job has one customer (send its own, or change it with "
        "PATCH /v1/jobs/job-1 first)"
    )
    for answer in (
        await client.post(
            "/v1/budgets/reservations",
            json={**body, "estimated_cost_usd": "0.01", "customer_id": "globex"},
        ),
        await client.get(
            "/v1/budgets/check",
            params={**body, "estimated_cost_usd": "0.01", "customer_id": "globex"},
        ),
    ):
        assert answer.status_code == 422, answer.text
        assert answer.json()["detail"] == expected
    # Naming the job's own customer, or none, is acme's budget's to decide: refused.
    for named in ({"customer_id": "acme"}, {}):
        refused = await client.post(
            "/v1/budgets/reservations", json={**body, "estimated_cost_usd": "0.01", **named}
        )
        assert refused.status_code == 402, refused.text
    # A job without a customer yet may be reserved for any: its first event sets it.
    fresh = await client.post(
        "/v1/budgets/reservations",
        json={**body, "job_id": "job-new", "estimated_cost_usd": "0.01", "customer_id": "globex"},
    )
    assert fresh.status_code == 200, fresh.text


async def test_a_hard_budget_that_could_not_count_a_call_to_an_unpriced_model_refuses_it(
    client: AsyncTestClient[Any],
) -> None:
    """A model the catalog lacks leaves an event's cost unknown (kept, listed, never zero):
    a hard budget of cost or price would count such a call as nothing, so it refuses it, in
    the look and in the reservation, and names the model. One of actual_cost counts the
    provider's reported cost, and admits it."""
    cost = await budget(client, scope="job", scope_id="job-u", limit_usd="1", hard=True)
    reserve = {"job_id": "job-u", "agent": "ORACLE", "estimated_cost_usd": "0.9"}
    refused = await client.post(
        "/v1/budgets/reservations", json={**reserve, "model": "acme/unknown"}
    )
    assert refused.status_code == 402, refused.text
    body = refused.json()
    assert (body["allowed"], body["reservation_id"], body["refused_by"]) == (
        False,
        None,
        "budget",
    )
    assert body["reason"] == (
        f"budget {cost['id']} (job job-u, month) is hard and counts cost, which the call would "
        "leave unknown: the catalog prices no 'acme/unknown' now (add it to the catalog, or "
        "count the budget's actual_cost)"
    )
    look = await client.get(
        "/v1/budgets/check",
        params={"job_id": "job-u", "model": "acme/unknown", "estimated_cost_usd": "0.9"},
    )
    assert (look.json()["allowed"], look.json()["reason"]) == (False, body["reason"])
    # As a fallback too: the call may be answered by it.
    fallback = await client.post(
        "/v1/budgets/reservations",
        json={**reserve, "model": "gemini-3.0-flash", "fallback_models": ["acme/unknown"]},
    )
    assert fallback.status_code == 402, fallback.text
    # A priced model is admitted (0.9 of 1 held), and so, by a budget of actual_cost, is
    # the unpriced one: the provider's cost counts there.
    priced = await client.post(
        "/v1/budgets/reservations", json={**reserve, "model": "gemini-3.0-flash"}
    )
    assert (priced.status_code, priced.json()["remaining_usd"]) == (201, "0.1")
    await budget(
        client, scope="job", scope_id="job-a", limit_usd="1", hard=True, measure="actual_cost"
    )
    admitted = await client.post(
        "/v1/budgets/reservations", json={**reserve, "job_id": "job-a", "model": "acme/unknown"}
    )
    assert (admitted.status_code, admitted.json()["remaining_usd"]) == (201, "0.1")


async def test_a_hard_price_budget_admits_an_unpriced_model_whose_price_its_plan_knows(
    client: AsyncTestClient[Any],
) -> None:
    """A price budget is blind to such a call only when the price is made from the
    catalog's cost: a plan listing the model with prices of its own, or one on the actual
    basis (the provider's reported cost), knows it."""
    # A model the catalog priced once (so a plan may list it), then removed.
    gone = {"id": "acme/unknown", "name": "Gone", "tier": "fast", "input": "1", "output": "1"}
    for version in (
        {"effective_from": "2026-09-01T00:00:00Z", "parent": 1, "models": [gone]},
        {"effective_from": "2026-11-01T00:00:00Z", "parent": 2, "remove": ["acme/unknown"]},
    ):
        made = await client.post("/v1/catalog/versions", json=version)
        assert made.status_code == 201, made.text
    await make_plan(
        client,
        "own",
        basis="catalog",
        markup="0",
        models={"acme/unknown": {"input": "1", "output": "2"}},
    )
    await make_plan(client, "actual", basis="actual", markup="0.1")
    await make_plan(client, "listprice", basis="catalog", markup="0.1")
    reserve = {"agent": "ORACLE", "model": "acme/unknown", "estimated_cost_usd": "0.01"}
    answers = {}
    for plan in ("own", "actual", "listprice"):
        await make_customer(client, f"c-{plan}", plan_id=plan)
        await budget(
            client,
            scope="customer",
            scope_id=f"c-{plan}",
            limit_usd="100",
            hard=True,
            measure="price",
        )
        answer = await client.post(
            "/v1/budgets/reservations",
            json={**reserve, "job_id": f"job-{plan}", "customer_id": f"c-{plan}"},
        )
        answers[plan] = answer.status_code
    assert answers == {"own": 201, "actual": 201, "listprice": 402}
