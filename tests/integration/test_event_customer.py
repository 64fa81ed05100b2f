"""SPEC §2's ``customer_id``: an event naming its customer is accepted and keeps it; the
field is part of the event's content (a replay naming another customer is a conflict)."""

from __future__ import annotations

from typing import Any

import asyncpg

from tests.support.events import wire_event
from tests.support.ledger_truth import STORED_EVENTS


async def test_an_event_naming_its_customer_is_kept_with_it(
    client: Any, db: asyncpg.Connection
) -> None:
    first = wire_event("gen-c1", customer_id="acme")
    response = await client.post("/v1/events", json=first)
    assert response.status_code == 201, response.text
    stored = await db.fetchval(f"SELECT customer_id FROM {STORED_EVENTS} WHERE event_id = 'gen-c1'")
    assert stored == "acme"

    assert (await client.post("/v1/events", json=first)).json()["status"] == "duplicate"
    other = await client.post("/v1/events", json={**first, "customer_id": "globex"})
    assert other.status_code == 409
    assert "customer_id" in other.json()["reason"]
    # the first stays
    assert await db.fetchval(f"SELECT customer_id FROM {STORED_EVENTS}") == "acme"


async def test_a_customer_id_out_of_bounds_is_rejected_alone(client: Any) -> None:
    batch = [
        wire_event("gen-c2", customer_id=""),
        wire_event("gen-c3", customer_id="c" * 129),
        wire_event("gen-c4", customer_id="ok\u0000"),
        wire_event("gen-c5", customer_id="initech"),
    ]
    answer = (await client.post("/v1/events/batch", json={"events": batch})).json()
    statuses = {r["id"]: r["status"] for r in answer["results"]}
    assert statuses == {
        "gen-c2": "rejected",
        "gen-c3": "rejected",
        "gen-c4": "rejected",
        "gen-c5": "accepted",
    }
    reasons = [r["reason"] for r in answer["results"] if r["status"] == "rejected"]
    assert all("customer_id" in reason for reason in reasons), reasons
