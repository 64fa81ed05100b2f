"""A small group recorded in one round trip (``recording.one_trip``): priced with what the
process's last opening found, stored only when the locks still say so. Each test follows
which statement recorded each request's group: the long way's (``queries.recording``) or
one trip's (``queries.one_trip``), and checks the money."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service.db import connect
from service.ingest.models import UsageEvent
from service.locks import LOCK_REPRICING
from service.recording.one_trip import OneTrip
from tests.support.events import MARKUP_PLAN, customer_on_plan, usage_event, wire_event
from tests.support.ledger_truth import rollup_differences
from tests.support.recording_spy import spy_recording_statements


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each statement a group was sent with: "long" (the long way's recording statement)
    or "trip" (one trip's, which may store nothing and send the group the long way)."""
    return spy_recording_statements(monkeypatch, lambda way, _: way)


async def post(client: AsyncTestClient[Any], event: dict[str, Any]) -> None:
    answer = await client.post("/v1/events", json=event)
    assert answer.status_code == 201, answer.text


async def test_after_the_first_opening_lone_events_take_one_trip(
    client: AsyncTestClient[Any], db: asyncpg.Connection, paths: list[str]
) -> None:
    for n in range(4):
        await post(client, wire_event(f"trip-{n}", job_id=f"job-{n % 2}"))
    # The first group opens the long way; the rest are described by what it found.
    assert paths == ["long", "trip", "trip", "trip"]
    # A replay is told from the stored event after the trip's commit.
    replay = await client.post("/v1/events", json=wire_event("trip-0", job_id="job-0"))
    assert replay.json()["status"] == "duplicate"
    conflict = await client.post(
        "/v1/events", json=wire_event("trip-1", job_id="job-1", output_tokens=1)
    )
    assert conflict.status_code == 409
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 4
    assert await db.fetchval("SELECT count(*) FROM jobs") == 2
    assert await rollup_differences(db) == {}


async def test_a_job_given_a_customer_elsewhere_is_priced_for_it(
    client: AsyncTestClient[Any], db: asyncpg.Connection, paths: list[str]
) -> None:
    await customer_on_plan(client, "acme", MARKUP_PLAN)
    await post(client, wire_event("c-1", job_id="job-x"))
    await post(client, wire_event("c-2", job_id="job-y"))
    # The process still takes job-x for a job without a customer.
    changed = await client.patch("/v1/jobs/job-x", json={"customer_id": "acme"})
    assert changed.status_code == 200, changed.text
    await post(client, wire_event("c-3", job_id="job-x", provider_cost_usd="0.01"))
    # The trip found job-x with acme under its lock, stored nothing, and the long way
    # priced the event for acme's plan: 0.01 × 1.2 + 0.001 = 0.013 USD.
    assert paths == ["long", "trip", "trip", "long"]
    price = await db.fetchval("SELECT price_usd FROM ledger_entries WHERE event_id = 'c-3'")
    assert price == Decimal("0.013")
    # And the next one of job-x takes one trip, priced for acme too.
    await post(client, wire_event("c-4", job_id="job-x", provider_cost_usd="0.02"))
    assert paths[-1] == "trip"
    price = await db.fetchval("SELECT price_usd FROM ledger_entries WHERE event_id = 'c-4'")
    assert price == Decimal("0.025")
    assert await db.fetchval("SELECT count(*) FROM ledger_entries WHERE kind = 'charge'") == 4
    assert await rollup_differences(db) == {}


def _budget_made_under_the_lock(database_url: str, made: threading.Event) -> int:
    """In a thread of its own (the in-process client's request holds the test's loop while
    it waits): a budget made as ``budgets.service`` makes one, under the re-pricing lock
    taken exclusive, committed once another transaction waits for that lock (or after ten
    seconds, which the caller's checks then catch)."""

    async def make() -> int:
        conn = await connect(database_url)
        try:
            async with conn.transaction():
                await conn.execute(LOCK_REPRICING)
                budget_id: int = await conn.fetchval(
                    "INSERT INTO budgets (scope, period, limit_usd, thresholds) "
                    "VALUES ('global', 'lifetime', 100, '{}') RETURNING id"
                )
                made.set()
                for _ in range(1000):
                    if await conn.fetchval(WAITING_FOR_THE_LOCK):
                        break
                    await asyncio.sleep(0.01)
            return budget_id
        finally:
            await conn.close()

    return asyncio.run(make())


WAITING_FOR_THE_LOCK = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"


async def test_a_budget_committed_while_the_trip_waits_for_the_lock_counts_its_spend(
    client: AsyncTestClient[Any], db: asyncpg.Connection, database_url: str, paths: list[str]
) -> None:
    await post(client, wire_event("b-1", job_id="job-b"))
    # The next group's statement begins (its snapshot taken) before the budget commits, and
    # waits for the lock: what it reads after the lock must see the budget.
    made = threading.Event()
    maker = asyncio.get_running_loop().run_in_executor(
        None, _budget_made_under_the_lock, database_url, made
    )
    assert await asyncio.to_thread(made.wait, 10)
    await post(client, wire_event("b-2", job_id="job-b"))
    budget_id = await maker
    # The trip stored nothing (a budget exists); the long way counted the spend.
    assert paths == ["long", "trip", "long"]
    cost = await db.fetchval("SELECT cost_usd FROM ledger_entries WHERE event_id = 'b-2'")
    assert cost > 0
    spent = await db.fetchval(
        "SELECT sum(spent_usd) FROM budget_spend WHERE budget_id = $1", budget_id
    )
    assert spent == cost
    # While a budget exists, every group goes the long way.
    await post(client, wire_event("b-3", job_id="job-b"))
    assert paths[-1] == "long"


def _events(*events: UsageEvent) -> list[UsageEvent]:
    return list(events)


def test_what_goes_the_long_way_without_a_trip() -> None:
    trip = OneTrip()
    assert trip.assumed(_events(usage_event("a"))) is None  # nothing opened yet
    opened = {"budgets_exist": False, "credits_exist": False}
    trip.learn(opened, [("job-a", ("acme", "markup"))])  # type: ignore[arg-type]
    known = trip.assumed(_events(usage_event("a", job_id="job-a", customer_id="acme")))
    assert known is not None
    assert (known["job-a"].customer_id, known["job-a"].plan_id) == ("acme", "markup")
    unknown = trip.assumed(_events(usage_event("b", job_id="job-new")))
    assert unknown is not None
    assert (unknown["job-new"].customer_id, unknown["job-new"].plan_id) == (None, None)
    # A job's first customer, another customer, a reservation: decided under the locks.
    assert trip.assumed(_events(usage_event("c", job_id="job-new", customer_id="acme"))) is None
    assert trip.assumed(_events(usage_event("d", job_id="job-a", customer_id="globex"))) is None
    assert trip.assumed(_events(usage_event("e", job_id="job-a", reservation_id="r-1"))) is None
    # Budgets or credit accounts want statements of their own.
    trip.learn({"budgets_exist": True, "credits_exist": False}, [])  # type: ignore[arg-type]
    assert trip.assumed(_events(usage_event("f", job_id="job-a"))) is None
