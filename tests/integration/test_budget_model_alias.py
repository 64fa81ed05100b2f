"""A model budget, made or looked up by a catalog alias, is the budget of the model the
alias names: creating, listing, checking, reserving and counting spend all agree.

``gemini-3.0-flash`` is an alias of ``google/gemini-3.0-flash`` in the seeded catalog
(0.10 / 0.40 USD per 1M tokens): the default event (1,000 in, 500 out) costs 0.0003 USD.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.support.events import wire_event

pytestmark = pytest.mark.asyncio

ALIAS, MODEL_ID = "gemini-3.0-flash", "google/gemini-3.0-flash"


async def _budget(client: AsyncTestClient[Any], scope_id: str, limit: str) -> dict[str, Any]:
    response = await client.post(
        "/v1/budgets",
        json={
            "scope": "model",
            "scope_id": scope_id,
            "period": "lifetime",
            "limit_usd": limit,
            "hard": True,
        },
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _listed(client: AsyncTestClient[Any], **params: str) -> list[int]:
    response = await client.get("/v1/budgets", params=params)
    assert response.status_code == 200, response.text
    return [b["id"] for b in response.json()["items"]]


async def test_a_model_budget_by_alias_is_the_models_budget_everywhere(
    client: AsyncTestClient[Any],
) -> None:
    by_alias = await _budget(client, ALIAS, "0.0005")
    by_id = await _budget(client, MODEL_ID, "0.001")
    other = await _budget(client, "anthropic/claude-opus-4.6", "1")
    assert by_alias["scope_id"] == MODEL_ID  # kept under the catalog id
    both = [by_alias["id"], by_id["id"]]

    # Listed by the alias or by the id, with or without the scope: the same two.
    assert await _listed(client, scope="model", scope_id=ALIAS) == both
    assert await _listed(client, scope="model", scope_id=MODEL_ID) == both
    assert await _listed(client, scope_id=ALIAS) == both
    assert other["id"] not in await _listed(client, scope="model", scope_id=ALIAS)
    # A name that is neither an id nor an alias finds nothing (it is taken as it is).
    assert await _listed(client, scope="model", scope_id="no-such-model") == []

    # Spend sent under the alias counts towards both.
    response = await client.post(
        "/v1/events/batch", json={"events": [wire_event("a-1", model=ALIAS)]}
    )
    assert response.json()["results"][0]["status"] == "accepted", response.text
    check = await client.get(
        "/v1/budgets/check", params={"model": ALIAS, "estimated_cost_usd": "0.0002"}
    )
    assert check.status_code == 200, check.text
    spent = {b["id"]: Decimal(b["spent_usd"]) for b in check.json()["budgets"]}
    assert spent == {by_alias["id"]: Decimal("0.0003"), by_id["id"]: Decimal("0.0003")}
    assert check.json()["allowed"] is True  # 0.0002 left of 0.0005: exactly room

    # Reserving by the alias holds against both, and the tighter one refuses what is left.
    made = await client.post(
        "/v1/budgets/reservations",
        json={"job_id": "j", "agent": "a", "model": ALIAS, "estimated_cost_usd": "0.0002"},
    )
    assert made.status_code == 201, made.text
    refused = await client.post(
        "/v1/budgets/reservations",
        json={"job_id": "j", "agent": "a", "model": MODEL_ID, "estimated_cost_usd": "0.0001"},
    )
    assert refused.status_code == 402, refused.text


async def _reserve(client: AsyncTestClient[Any], estimate: str, *fallbacks: str) -> dict[str, Any]:
    """A reservation for a Sonnet 4.5 call that ``fallbacks`` may answer; status and body."""
    body: dict[str, Any] = {
        "job_id": "j",
        "agent": "a",
        "model": "anthropic/claude-sonnet-4.5",
        "estimated_cost_usd": estimate,
    }
    if fallbacks:
        body["fallback_models"] = list(fallbacks)
    response = await client.post("/v1/budgets/reservations", json=body)
    return {"status": response.status_code, **response.json()}


async def test_a_reservation_naming_fallback_models_holds_against_their_budgets_too(
    client: AsyncTestClient[Any],
) -> None:
    opus = await _budget(client, "anthropic/claude-opus-4.6", "0.001")
    # Opus's budget has no room for 0.002, though the call asks for Sonnet: Opus may answer.
    refused = await _reserve(client, "0.002", "anthropic/claude-opus-4.6")
    assert (refused["status"], [b["id"] for b in refused["budgets"]]) == (402, [opus["id"]])
    # Without the fallback no hard budget applies: allowed, nothing held.
    alone = await _reserve(client, "0.002")
    assert (alone["status"], alone["reservation_id"]) == (200, None)
    # A fallback named by its alias is the model's: Flash's budget refuses 0.0004.
    flash = await _budget(client, MODEL_ID, "0.0003")
    by_alias = await _reserve(client, "0.0004", ALIAS)
    assert (by_alias["status"], [b["id"] for b in by_alias["budgets"]]) == (402, [flash["id"]])
    # With room, one reservation holds the estimate against the fallback's budget.
    made = await _reserve(client, "0.0004", "anthropic/claude-opus-4.6")
    assert made["status"] == 201, made
    [standing] = made["budgets"]
    assert (standing["id"], Decimal(standing["reserved_usd"])) == (opus["id"], Decimal("0.0004"))
