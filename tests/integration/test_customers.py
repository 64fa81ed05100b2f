"""Customers over REST: registered, listed a page at a time, read and changed; every bad
input a 4xx whose message names the field and the problem."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from tests.support.clock import clear_of_end
from tests.support.events import record_accepted, wire_event

PLAN = {
    "id": "standard",
    "name": "Standard",
    "effective_from": "2026-01-01T00:00:00Z",
    "basis": "catalog",
    "markup": "0.25",
}
ACME = {
    "id": "acme",
    "name": "Acme Corp",
    "email": "billing@acme.example",
    "address": "1 Main St\nSpringfield",
    "tax_id": "US-12-3456789",
    "plan_id": "standard",
    "invoicing": "monthly",
    "low_balance_usd": "25.50",
    "credit_stop": True,
}


def not_yet() -> dict[str, str]:
    """What the answer adds: month-to-date money (none yet: zero) of the UTC month the
    test runs in (read when asked: a run started in the month before must not expect it)."""
    return {
        "month": datetime.now(UTC).strftime("%Y-%m"),
        "price_usd": "0",
        "actual_cost_usd": "0",
        "margin_usd": "0",
    }


def answered() -> dict[str, Any]:
    """Acme as answered: with ``not_yet``, the prepaid balance ("0" before any grant) and
    no webhook target; and money in LUC's form (no trailing zeros)."""
    return {
        **ACME,
        **not_yet(),
        "credit_balance_usd": "0",
        "low_balance_usd": "25.5",
        "webhook_url": None,
    }


@pytest.fixture(autouse=True)
async def clear_of_month_end() -> AsyncIterator[None]:
    """Answers carry the month to date: each test runs clear of a UTC month's end, so the
    month it expects is the one LUC answers with."""
    await clear_of_end("month")
    yield


@pytest.fixture
async def plan(client: AsyncTestClient[Any]) -> None:
    response = await client.post("/v1/plans", json=PLAN)
    assert response.status_code == 201, response.text


def _without_times(customer: dict[str, Any]) -> dict[str, Any]:
    assert customer.pop("created_at") and customer.pop("updated_at")
    return customer


async def test_a_customer_is_registered_read_back_and_stored_as_given(
    client: AsyncTestClient[Any], db: asyncpg.Connection, plan: None
) -> None:
    created = await client.post("/v1/customers", json=ACME)
    assert created.status_code == 201, created.text
    assert _without_times(created.json()) == answered()
    read = await client.get("/v1/customers/acme")
    assert read.status_code == 200
    assert _without_times(read.json()) == answered()
    stored = await db.fetchrow("SELECT plan_id, low_balance_usd FROM customers WHERE id = 'acme'")
    assert stored is not None
    assert (stored["plan_id"], str(stored["low_balance_usd"])) == ("standard", "25.50")


async def test_a_customer_needs_only_an_id_and_a_name(client: AsyncTestClient[Any]) -> None:
    created = await client.post("/v1/customers", json={"id": "globex", "name": "Globex"})
    assert created.status_code == 201, created.text
    assert _without_times(created.json()) == {
        "id": "globex",
        "name": "Globex",
        "email": None,
        "address": None,
        "tax_id": None,
        "plan_id": None,
        "invoicing": "per_job",
        "low_balance_usd": None,
        "credit_stop": False,
        **not_yet(),
        "credit_balance_usd": "0",
        "webhook_url": None,
    }


async def test_customers_are_listed_in_id_order_a_page_at_a_time(
    client: AsyncTestClient[Any],
) -> None:
    for customer_id in ("c-3", "c-1", "c-2"):
        created = await client.post("/v1/customers", json={"id": customer_id, "name": "X"})
        assert created.status_code == 201
    first = (await client.get("/v1/customers", params={"limit": 2})).json()
    assert [c["id"] for c in first["items"]] == ["c-1", "c-2"]
    rest = (await client.get("/v1/customers", params={"cursor": first["next_cursor"]})).json()
    assert ([c["id"] for c in rest["items"]], rest["next_cursor"]) == (["c-3"], None)


async def test_a_patch_changes_what_it_names_and_null_clears(
    client: AsyncTestClient[Any], plan: None
) -> None:
    assert (await client.post("/v1/customers", json=ACME)).status_code == 201
    changed = await client.patch(
        "/v1/customers/acme",
        json={"name": "Acme Inc", "email": None, "plan_id": None, "invoicing": "per_job"},
    )
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["name"], body["email"], body["plan_id"], body["invoicing"]) == (
        "Acme Inc",
        None,
        None,
        "per_job",
    )
    # What the patch did not name stays.
    assert (body["address"], body["tax_id"], body["low_balance_usd"], body["credit_stop"]) == (
        ACME["address"],
        ACME["tax_id"],
        "25.5",
        True,
    )
    again = await client.patch(
        "/v1/customers/acme", json={"plan_id": "standard", "low_balance_usd": "0"}
    )
    assert (again.json()["plan_id"], again.json()["low_balance_usd"]) == ("standard", "0")
    assert (await client.get("/v1/customers/acme")).json()["name"] == "Acme Inc"


async def test_a_taken_id_is_a_conflict_and_the_first_customer_stays(
    client: AsyncTestClient[Any],
) -> None:
    assert (await client.post("/v1/customers", json={"id": "acme", "name": "A"})).status_code == 201
    again = await client.post("/v1/customers", json={"id": "acme", "name": "B"})
    assert again.status_code == 409
    assert again.json()["detail"] == "customer 'acme' already exists"
    assert (await client.get("/v1/customers/acme")).json()["name"] == "A"


async def test_an_unknown_customer_is_404_to_read_and_to_change(
    client: AsyncTestClient[Any],
) -> None:
    for response in (
        await client.get("/v1/customers/nobody"),
        await client.patch("/v1/customers/nobody", json={"name": "X"}),
    ):
        assert response.status_code == 404
        assert response.json()["detail"] == "customer 'nobody' does not exist"


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        (
            {"plan_id": "gold"},
            "plan_id: plan 'gold' does not exist (create it with POST /v1/plans, or "
            "`luc plans create`)",
        ),
        (
            {"low_balance_usd": "1e3"},
            "low_balance_usd: '1e3' has an exponent; write every digit (a plain decimal "
            "string is expected, e.g. '12.05')",
        ),
        (
            {"low_balance_usd": "-5"},
            "low_balance_usd: '-5' has a sign; the amount cannot be negative (a plain decimal "
            "string is expected, e.g. '12.05')",
        ),
        (
            {"email": "billing.acme.example"},
            "email: 'billing.acme.example' is not an e-mail address (expected name@domain.tld)",
        ),
        ({"email": "a@b"}, "email: 'a@b' is not an e-mail address (expected name@domain.tld)"),
        ({"name": ""}, "name: must be 1 to 200 characters, got 0"),
        ({"id": "c" * 129}, "id: must be 1 to 128 characters, got 129"),
        ({"id": "nul\u0000"}, "id: must not contain the NUL character (U+0000)"),
        ({"invoicing": "weekly"}, "invoicing: 'weekly' is not one of per_job, monthly"),
        ({"tax_id": "t" * 65}, "tax_id: must be 1 to 64 characters, got 65"),
    ],
)
async def test_bad_input_is_refused_with_a_message_naming_the_field(
    client: AsyncTestClient[Any], fields: dict[str, Any], detail: str
) -> None:
    response = await client.post("/v1/customers", json={"id": "acme", "name": "Acme", **fields})
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == detail
    assert (await client.get("/v1/customers")).json()["items"] == []


async def test_a_patch_refuses_bad_input_and_changes_nothing(
    client: AsyncTestClient[Any], plan: None
) -> None:
    assert (await client.post("/v1/customers", json=ACME)).status_code == 201
    for body, detail in (
        (
            {"name": None},
            "name: cannot be cleared (only email, address, tax_id, plan_id, low_balance_usd, "
            "webhook_url can)",
        ),
        (
            {"plan_id": "gold"},
            "plan_id: plan 'gold' does not exist (create it with "
            "POST /v1/plans, or `luc plans create`)",
        ),
        ({"email": "nope"}, "email: 'nope' is not an e-mail address (expected name@domain.tld)"),
        (
            {"low_balance_usd": "ten"},
            "low_balance_usd: 'ten' is not a decimal string (a plain "
            "decimal string is expected, e.g. '12.05')",
        ),
    ):
        response = await client.patch("/v1/customers/acme", json=body)
        assert response.status_code == 422, response.text
        assert response.json()["detail"] == detail
    assert _without_times((await client.get("/v1/customers/acme")).json()) == answered()


async def test_unknown_fields_and_money_as_numbers_are_refused(
    client: AsyncTestClient[Any],
) -> None:
    unknown = await client.post("/v1/customers", json={"id": "a", "name": "A", "vat": "x"})
    assert unknown.status_code == 400
    assert "vat" in unknown.json()["detail"]
    number = await client.post(
        "/v1/customers", json={"id": "a", "name": "A", "low_balance_usd": 25.5}
    )
    assert number.status_code == 400
    assert "low_balance_usd" in number.json()["detail"]


async def test_month_to_date_figures_no_event_knows_are_null_not_zero(
    client: AsyncTestClient[Any], plan: None
) -> None:
    """Acme's plan marks up the catalog cost: a call of a model the catalog lacks has no
    price for it, and, having reported no cost, no actual cost either. Then a call of
    gemini-3.0-flash (1,000 × 0.10/M + 500 × 0.40/M = 0.0003; × 1.25 = 0.000375) makes
    both known; the unknown call adds nothing to them."""
    assert (await client.post("/v1/customers", json=ACME)).status_code == 201
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    unknown = wire_event(
        "c1", job_id="job-c", customer_id="acme", model="vendor/x", occurred_at=now
    )
    await record_accepted(client, [unknown])
    figures = ("price_usd", "actual_cost_usd", "margin_usd")

    acme = (await client.get("/v1/customers/acme")).json()
    assert tuple(acme[f] for f in figures) == (None, None, None)

    await record_accepted(
        client, [wire_event("c2", job_id="job-c", customer_id="acme", occurred_at=now)]
    )
    acme = (await client.get("/v1/customers/acme")).json()
    assert tuple(acme[f] for f in figures) == ("0.000375", "0.0003", "0.000075")
