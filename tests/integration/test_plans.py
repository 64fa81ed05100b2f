"""Rate plans over REST: a plan with its first version, more versions, every version read
back exactly; versions never change; bad plans refused whole with a message naming the
field."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service.customers.plans import load_plans
from tests.support.events import WHEN

FLASH = "google/gemini-3.0-flash"
SONNET = "anthropic/claude-sonnet-4.5"
PLAN = {
    "id": "enterprise",
    "name": "Enterprise",
    "effective_from": "2026-11-01T00:00:00Z",
    "basis": "catalog",
    "markup": "0.25",
    "per_request_usd": "0.001",
    "minimum_monthly_usd": "500.00",
    # An alias, and only some prices: the rest follow the catalog's default rule.
    "models": {"gemini-3.0-flash": {"input": "0.08", "output": "0.32", "cache_read": "0.02"}},
}
OWN_FLASH = {
    "input": "0.08",
    "output": "0.32",
    "cache_read": "0.02",
    "cache_write": "0.08",  # defaults to input
    "reasoning": "0.32",  # defaults to output
    "per_request": "0",
}


async def _create(client: AsyncTestClient[Any], **fields: Any) -> Any:
    return await client.post("/v1/plans", json={**PLAN, **fields})


async def test_a_plan_is_created_with_its_first_version_aliases_resolved_defaults_applied(
    client: AsyncTestClient[Any],
) -> None:
    created = await _create(client)
    assert created.status_code == 201, created.text
    plan = created.json()
    [version] = plan["versions"]
    assert (plan["id"], plan["name"], plan["current_version"]) == (
        "enterprise",
        "Enterprise",
        version["id"],
    )
    assert {k: v for k, v in version.items() if k not in ("id", "created_at")} == {
        "plan_id": "enterprise",
        "effective_from": "2026-11-01T00:00:00Z",
        "basis": "catalog",
        "markup": "0.25",
        "per_request_usd": "0.001",
        "minimum_monthly_usd": "500",
        "models": {FLASH: {**OWN_FLASH, "long_context": []}},
    }
    assert (await client.get("/v1/plans/enterprise")).json() == plan


async def test_versions_are_added_and_each_is_kept_as_it_was(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    first = (await _create(client)).json()["versions"][0]
    added = await client.post(
        "/v1/plans/enterprise/versions",
        json={
            "effective_from": "2026-12-01T00:00:00Z",
            "basis": "actual",
            "markup": "0.3",
            "models": {SONNET: {"input": "2.40", "output": "12.00"}},
        },
    )
    assert added.status_code == 201, added.text
    second = added.json()
    assert (second["plan_id"], second["basis"], second["markup"], second["per_request_usd"]) == (
        "enterprise",
        "actual",
        "0.3",
        "0",
    )
    assert second["minimum_monthly_usd"] is None
    assert list(second["models"]) == [SONNET]
    plan = (await client.get("/v1/plans/enterprise")).json()
    assert plan["versions"] == [first, second]
    # Priced by the version in force at the event: the first until December.
    plans = await load_plans(db)
    in_november = plans["enterprise"].version_at(WHEN)
    assert in_november is not None and in_november.id == first["id"]
    [listed] = (await client.get("/v1/plans")).json()["items"]
    assert listed == plan


async def test_plan_versions_never_change(
    client: AsyncTestClient[Any], db: asyncpg.Connection
) -> None:
    assert (await _create(client)).status_code == 201
    for statement in (
        "UPDATE plan_versions SET markup = 0",
        "DELETE FROM plan_versions",
        "UPDATE plans SET name = 'x'",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await db.execute(statement)


async def test_a_taken_plan_id_is_a_conflict_and_the_first_plan_stays(
    client: AsyncTestClient[Any],
) -> None:
    assert (await _create(client)).status_code == 201
    again = await _create(client, name="Other", markup="0.5")
    assert again.status_code == 409
    assert again.json()["detail"] == "plan 'enterprise' already exists"
    plan = (await client.get("/v1/plans/enterprise")).json()
    assert (plan["name"], len(plan["versions"])) == ("Enterprise", 1)


async def test_an_unknown_plan_is_404(client: AsyncTestClient[Any]) -> None:
    read = await client.get("/v1/plans/gold")
    assert (read.status_code, read.json()["detail"]) == (404, "plan 'gold' does not exist")
    version = {k: v for k, v in PLAN.items() if k not in ("id", "name")}
    added = await client.post("/v1/plans/gold/versions", json=version)
    assert (added.status_code, added.json()["detail"]) == (404, "plan 'gold' does not exist")


@pytest.mark.parametrize(
    ("fields", "detail"),
    [
        (
            {"markup": "-0.1"},
            "markup: '-0.1' is negative; a markup is 0 or more (0.25 adds 25 %), and a "
            "discount is the plan's own price for a model (models)",
        ),
        (
            {"markup": "-0"},
            "markup: '-0' has a sign; a markup is 0 or more (0.25 adds 25 %), and a "
            "discount is the plan's own price for a model (models)",
        ),
        (
            {"markup": "10.01"},
            "markup: '10.01' is above 10 (1000 %); a markup is a fraction of the cost "
            "(0.25 adds 25 %)",
        ),
        (
            {"markup": "25%"},
            "markup: '25%' is not a decimal string (a plain decimal string is expected, "
            "e.g. '12.05')",
        ),
        (
            {"markup": "2.5e-1"},
            "markup: '2.5e-1' has an exponent; write every digit (a plain decimal string is "
            "expected, e.g. '12.05')",
        ),
        ({"basis": "list"}, "basis: 'list' is not one of catalog, actual"),
        (
            {"effective_from": "2026-11-01T00:00:00"},
            "effective_from: timestamp has no UTC offset (RFC 3339 needs one, e.g. 'Z' or "
            "'+02:00')",
        ),
        # asyncpg writes this instant as PostgreSQL's -infinity, read back naive: stored,
        # every later read of the plans answered 500.
        (
            {"effective_from": "0001-01-01T00:00:00Z"},
            "effective_from: 0001-01-01T00:00:00Z is the first or last instant of years "
            "0001-9999, which PostgreSQL's binary protocol reads as -infinity or infinity; it "
            "cannot be stored as sent",
        ),
        (
            {"per_request_usd": "-0.01"},
            "per_request_usd: '-0.01' has a sign; the amount cannot be negative (a plain "
            "decimal string is expected, e.g. '12.05')",
        ),
        # A price per call, held to the price rule as a model's own per_request is: 40
        # nines were taken, and billed on every call of the plan.
        (
            {"per_request_usd": "9" * 40},
            "per_request_usd: prices must be finite, not negative, below 1000000000000 and "
            f"have at most 30 decimal places (it is {'9' * 40})",
        ),
        (
            {"per_request_usd": "0." + "0" * 39 + "1"},
            "per_request_usd: prices must be finite, not negative, below 1000000000000 and "
            f"have at most 30 decimal places (it is 0.{'0' * 39}1)",
        ),
        (
            {"minimum_monthly_usd": "1,000"},
            "minimum_monthly_usd: '1,000' is not a decimal string (a plain decimal string is "
            "expected, e.g. '12.05')",
        ),
        (
            {"models": {"acme/unknown-1": {"input": "1", "output": "2"}}},
            "models: 'acme/unknown-1' is not a model of any catalog version (GET /v1/catalog "
            "lists them; an alias works too)",
        ),
        (
            {"models": {FLASH: {"input": "-1", "output": "2"}}},
            f"models[{FLASH}].input: '-1' has a sign; the amount cannot be negative (a plain "
            "decimal string is expected, e.g. '12.05')",
        ),
        (
            {
                "models": {
                    FLASH: {"input": "1", "output": "2"},
                    "gemini-3.0-flash": {"input": "1", "output": "3"},
                }
            },
            f"models: '{FLASH}' and 'gemini-3.0-flash' are the same model ({FLASH}); give its "
            "price once",
        ),
        (
            {"id": "gold plan"},
            "id: 'gold plan' may hold only letters, digits and . _ : - (it goes in URLs)",
        ),
        ({"name": ""}, "name: must be 1 to 200 characters, got 0"),
    ],
)
async def test_a_bad_plan_is_refused_whole_with_a_message_naming_the_field(
    client: AsyncTestClient[Any], fields: dict[str, Any], detail: str
) -> None:
    response = await _create(client, **fields)
    assert response.status_code == 422, response.text
    assert response.json()["detail"] == detail
    assert (await client.get("/v1/plans")).json()["items"] == []


async def test_a_bad_version_is_refused_and_the_plan_keeps_its_versions(
    client: AsyncTestClient[Any],
) -> None:
    assert (await _create(client)).status_code == 201
    version = {k: v for k, v in PLAN.items() if k not in ("id", "name")}
    refused = await client.post("/v1/plans/enterprise/versions", json={**version, "markup": "11"})
    assert refused.status_code == 422
    renamed = await client.post("/v1/plans/enterprise/versions", json={**version, "name": "x"})
    assert renamed.status_code == 400  # a version has no name: the plan has
    assert "name" in renamed.json()["detail"]
    assert len((await client.get("/v1/plans/enterprise")).json()["versions"]) == 1


async def test_a_price_entry_takes_no_field_a_catalog_entry_does_not(
    client: AsyncTestClient[Any],
) -> None:
    response = await _create(client, models={FLASH: {"input": "1", "output": "2", "cached": "1"}})
    assert response.status_code == 400
    assert "cached" in response.json()["detail"]
