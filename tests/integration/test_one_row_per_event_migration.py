"""Migration 0028 (one row per event) on a ledger that holds events stored as 0027 stored
them: a ``usage_events`` row beside each charge. After the upgrade every event is its key
row and its charge, which holds the event's own fields exactly as sent; a replay of each is
a duplicate, a changed one a conflict naming what changed, and every total is what it was.
The downgrade gives 0027's ``usage_events`` back, row for row.

The events are recorded through the service at head, the database taken back to 0027 (the
rows 0027 held are checked field by field, by hand), then upgraded again: an event sent by
an alias of a priced model, one with attributes and status ``error``, one with empty
attributes and a reservation id, one naming its customer, and one sent by an alias no
version knew yet, re-rated when a version brought its model (a charge and two
adjustments), in two month partitions (October lands in the default partition).
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest

from service.db.migrations import migrate_sync, schema_revision
from tests.support.catalogs import MISTRAL, mistral_arrives
from tests.support.databases import connected
from tests.support.events import record_accepted, wire_event
from tests.support.ledger_truth import rollup_differences
from tests.support.migrations import downgrade_to

REVISION = "0028_one_row_per_event"
BEFORE = "0027_monthly_invoices"
FLASH = "google/gemini-3.0-flash"  # 0.10 in / 0.40 out per 1M
ATTRIBUTES = {
    "route": "/chat",
    "upstream_model": "google/gemini-3.0-flash-001",
    "score": 1.5,
    "tags": ["a", True, None],
}

EVENTS = [
    # 10,000 × 0.10 + 1,000 × 0.40 = 1,400 per 1M = 0.0014
    wire_event(
        "m-alias",
        occurred_at="2026-10-05T10:00:00Z",
        job_id="job-m",
        model="gemini-3.0-flash",
        input_tokens=10_000,
        output_tokens=1_000,
    ),
    # the default event: 0.0003
    wire_event("m-attrs", job_id="job-m", status="error", attributes=ATTRIBUTES),
    wire_event("m-empty", job_id="job-m", attributes={}, reservation_id="res-never-issued"),
    wire_event("m-customer", job_id="job-c", customer_id="acme"),
    # unpriced at first; then 12,000 × 0.50 + 1,500 × 1.50 = 8,250 per 1M = 0.00825
    wire_event(
        "m-rerated",
        occurred_at="2026-10-06T10:00:00Z",
        job_id="job-m",
        agent="ORACLE",
        model="mistral-large",
        input_tokens=12_000,
        output_tokens=1_500,
        provider_cost_usd="0.01",
    ),
]

# What 0027 stored in usage_events for each, in id order (from the events above).
STORED_AT_0027 = [
    ("m-alias", "job-m", "gemini-3.0-flash", "ok", None, None, None),
    ("m-attrs", "job-m", FLASH, "error", ATTRIBUTES, None, None),
    ("m-customer", "job-c", FLASH, "ok", None, None, "acme"),
    ("m-empty", "job-m", FLASH, "ok", {}, "res-never-issued", None),
    ("m-rerated", "job-m", "mistral-large", "ok", None, None, None),
]
USAGE_EVENTS = """
SELECT event_id, job_id, model, status, attributes, reservation_id, customer_id
FROM usage_events ORDER BY event_id
"""
# usage_events' instants beside those of each event's charge
RECEIVED = """
SELECT e.event_id, e.occurred_at, e.received_at, l.occurred_at AS charged_at, l.recorded_at
FROM usage_events AS e JOIN ledger_entries AS l USING (event_id)
WHERE l.kind = 'charge' ORDER BY e.event_id
"""

# Each entry with the event fields it carries (the charge's; NULL on adjustments).
CARRIED = """
SELECT event_id, kind, model, sent_model, status, attributes, reservation_id, event_customer_id
FROM ledger_entries ORDER BY event_id, id
"""
CARRIED_AFTER = [
    ("m-alias", "charge", FLASH, "gemini-3.0-flash", None, None, None, None),
    ("m-attrs", "charge", FLASH, None, "error", ATTRIBUTES, None, None),
    ("m-customer", "charge", FLASH, None, None, None, None, "acme"),
    ("m-empty", "charge", FLASH, None, None, {}, "res-never-issued", None),
    # charged unpriced under the name it was sent by: the name is the charge's model
    ("m-rerated", "charge", "mistral-large", None, None, None, None, None),
    ("m-rerated", "adjustment", "mistral-large", None, None, None, None, None),
    ("m-rerated", "adjustment", MISTRAL["id"], None, None, None, None, None),
]
KEYS = "SELECT event_id, occurred_at FROM event_keys ORDER BY event_id"
EVENT_INDEX = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ledger_entries_event'"


async def _decoded(conn: asyncpg.Connection, sql: str) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` with jsonb decoded (asyncpg hands it over as text)."""
    return [
        tuple(json.loads(v) if isinstance(v, str) and v[:1] in "{[" else v for v in r)
        for r in await conn.fetch(sql)
    ]


async def _totals(client: Any) -> dict[str, Any]:
    """Everything the API says of the two jobs: totals, lines, entries."""
    answers: dict[str, Any] = {}
    for job in ("job-m", "job-c"):
        for path in (f"/v1/jobs/{job}", f"/v1/jobs/{job}/entries"):
            response = await client.get(path)
            assert response.status_code == 200, response.text
            answers[path] = response.json()
    return answers


async def _record_and_rerate(client: Any) -> None:
    await record_accepted(client, EVENTS)
    assert (await mistral_arrives(client))["repriced_events"] == 1


async def test_the_upgrade_keeps_each_event_on_its_charge_and_replays_stay_duplicates(
    client: Any, database_url: str
) -> None:
    await _record_and_rerate(client)
    totals = await _totals(client)
    # 0.0014 + 0.0003 + 0.0003 + 0.00825 for job-m; its actual cost takes m-rerated's
    # reported 0.01 instead of its 0.00825
    assert Decimal(totals["/v1/jobs/job-m"]["cost_usd"]) == Decimal("0.01025")
    assert Decimal(totals["/v1/jobs/job-m"]["actual_cost_usd"]) == Decimal("0.012")
    async with connected(database_url) as conn:
        written = await _decoded(conn, CARRIED)
        keys = [tuple(r) for r in await conn.fetch(KEYS)]
    # what the write path stores is what the backfill makes of 0027's rows (below)
    assert written == CARRIED_AFTER

    await downgrade_to(database_url, BEFORE)
    async with connected(database_url) as conn:
        assert await schema_revision(conn) == BEFORE
        assert await _decoded(conn, USAGE_EVENTS) == STORED_AT_0027
        for r in await conn.fetch(RECEIVED):
            assert r["occurred_at"] == r["charged_at"]
            assert r["received_at"] == r["recorded_at"]
        assert await conn.fetchval("SELECT to_regclass('event_keys')") is None
        gone = await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns"
            " WHERE table_name = 'ledger_entries' AND column_name = 'sent_model'"
        )
        assert gone == 0
        # 0027's usage_events, whole: its primary key, append-only, the upstream index
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(
                "INSERT INTO usage_events SELECT * FROM usage_events WHERE event_id = 'm-alias'"
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("UPDATE usage_events SET agent = 'x'")
        indexes = "SELECT indexname FROM pg_indexes WHERE tablename = 'usage_events' ORDER BY 1"
        assert [r[0] for r in await conn.fetch(indexes)] == [
            "usage_events_pkey",
            "usage_events_upstream_model",
        ]
        assert "USING btree (event_id)" in await conn.fetchval(EVENT_INDEX)

    await asyncio.to_thread(migrate_sync, database_url)
    async with connected(database_url) as conn:
        assert await schema_revision(conn) != BEFORE  # this one, or one after it
        assert await conn.fetchval("SELECT to_regclass('usage_events')") is None
        assert [tuple(r) for r in await conn.fetch(KEYS)] == keys
        assert await _decoded(conn, CARRIED) == written
        assert await rollup_differences(conn) == {}
        assert "USING hash (event_id)" in await conn.fetchval(EVENT_INDEX)
        # the ledger's append-only trigger is on again, and the keys have theirs
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("UPDATE ledger_entries SET agent = 'x'")
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute("DELETE FROM event_keys")
    assert await _totals(client) == totals

    replayed = await client.post("/v1/events/batch", json={"events": EVENTS})
    assert replayed.status_code == 200, replayed.text
    assert [r["status"] for r in replayed.json()["results"]] == ["duplicate"] * len(EVENTS)

    by_id = {e["id"]: e for e in EVENTS}
    changed = [
        {**by_id["m-alias"], "model": FLASH},  # the model it resolves to is not what was sent
        {**by_id["m-attrs"], "occurred_at": "2026-11-20T10:00:01Z"},  # another instant
        {k: v for k, v in by_id["m-empty"].items() if k != "attributes"},  # none, not {}
        {k: v for k, v in by_id["m-customer"].items() if k != "customer_id"},
        {**by_id["m-rerated"], "status": "error"},
    ]
    answer = await client.post("/v1/events/batch", json={"events": changed})
    assert answer.status_code == 200, answer.text
    results = answer.json()["results"]
    assert [r["status"] for r in results] == ["conflict"] * len(changed)
    differing = ("model", "occurred_at", "attributes", "customer_id", "status")
    for result, field in zip(results, differing, strict=True):
        assert f"with different {field};" in result["reason"], result
    assert await _totals(client) == totals
    async with connected(database_url) as conn:
        assert await conn.fetchval("SELECT count(*) FROM event_keys") == len(EVENTS)
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == len(CARRIED_AFTER)


async def test_a_downgrade_and_upgrade_round_trip_changes_nothing_and_the_service_goes_on(
    client: Any, database_url: str
) -> None:
    await _record_and_rerate(client)
    totals = await _totals(client)
    async with connected(database_url) as conn:
        written = await _decoded(conn, CARRIED)
    for _ in range(2):
        await downgrade_to(database_url, BEFORE)
        await asyncio.to_thread(migrate_sync, database_url)
    async with connected(database_url) as conn:
        assert await _decoded(conn, CARRIED) == written
    assert await _totals(client) == totals
    # Re-rating reads the migrated charges: Mistral's prices halve from 2026-10-01, so
    # m-rerated (2026-10-06) is booked again at 12,000 × 0.25 + 1,500 × 0.75 = 4,125 per
    # 1M = 0.004125.
    cheaper = await client.post(
        "/v1/catalog/versions",
        json={
            "effective_from": "2026-10-01T00:00:00Z",
            "label": "mistral halves",
            "parent": 2,
            "models": [{**MISTRAL, "input": "0.25", "output": "0.75"}],
        },
    )
    assert cheaper.status_code == 201, cheaper.text
    rerate = await client.post("/v1/catalog/rerate", json={"since": "2026-10-01T00:00:00Z"})
    assert rerate.status_code in (200, 201), rerate.text
    job = (await client.get("/v1/jobs/job-m")).json()
    # 0.0014 + 0.0003 + 0.0003 + 0.004125
    assert Decimal(job["cost_usd"]) == Decimal("0.006125")
    async with connected(database_url) as conn:
        assert await rollup_differences(conn) == {}
        occurred = await conn.fetchval(
            "SELECT occurred_at FROM event_keys WHERE event_id = 'm-rerated'"
        )
    assert occurred == datetime.fromisoformat("2026-10-06T10:00:00+00:00")
