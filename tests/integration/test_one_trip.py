"""A small group recorded in one round trip (``recording.one_trip``): priced with what the
process's last opening found, stored only when the locks still say so. Each test follows
which statement recorded each request's group: the long way's (``queries.recording``) or
one trip's (``queries.one_trip``), and checks the money."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from decimal import Decimal
from typing import Any, cast

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient

from service.budgets.service import create_budget
from service.catalog.service import CatalogCache
from service.customers.plans import PlanCache
from service.db import Connection, connect
from service.ingest.models import UsageEvent
from service.locks import LOCK_REPRICING
from service.recording.one_trip import OneTrip
from service.recording.service import record_batch
from tests.support.budgets import Receiver, opus_event, watched_global_budget
from tests.support.events import MARKUP_PLAN, customer_on_plan, usage_event, wire_event
from tests.support.ledger_truth import rollup_differences
from tests.support.recording_spy import spy_recording_statements
from tests.support.waiting import wait_for


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
    # The trip found the budget it did not know of and stored nothing; the long way counted
    # the spend.
    assert paths == ["long", "trip", "long"]
    cost = await db.fetchval("SELECT cost_usd FROM ledger_entries WHERE event_id = 'b-2'")
    assert cost > 0
    spent = await db.fetchval(
        "SELECT sum(spent_usd) FROM budget_spend WHERE budget_id = $1", budget_id
    )
    assert spent == cost
    # Knowing of budgets now, the next trip counts its spend itself.
    await post(client, wire_event("b-3", job_id="job-b"))
    assert paths[-1] == "trip"
    spent = await db.fetchval(
        "SELECT sum(spent_usd) FROM budget_spend WHERE budget_id = $1", budget_id
    )
    assert spent == 2 * cost  # b-3 is b-2's call again


AT = "2026-11-20T10:00:00Z"


async def test_a_trip_raises_the_alerts_its_spend_passes_in_order(
    client: AsyncTestClient[Any], db: asyncpg.Connection, paths: list[str]
) -> None:
    await post(client, opus_event("o-0", "0.0002", occurred_at=AT))
    budget = await create_budget(
        db,
        watched_global_budget("0.0020", [Decimal("0.5"), Decimal("0.8"), Decimal("1")], HOOK, None),
    )
    # Made with the ledger's 0.0002 counted; then 0.0006, 0.0016 (past 0.5 × 0.002 = 0.001
    # and 0.8 × 0.002 = 0.0016, reached exactly), 0.0020 (1 × 0.002, reached exactly).
    for n, usd in enumerate(["0.0004", "0.0010", "0.0004"], start=1):
        await post(client, opus_event(f"o-{n}", usd, occurred_at=AT))
    # The first trip finds the budget and goes the long way; the next two count it.
    assert paths == ["long", "trip", "long", "trip", "trip"]
    spent = await db.fetchval("SELECT spent_usd FROM budget_spend WHERE budget_id = $1", budget.id)
    assert spent == Decimal("0.0020")
    alerts = await db.fetch(
        "SELECT a.threshold, a.spent_usd, a.limit_usd, o.webhook_url"
        " FROM alerts AS a JOIN alert_outbox AS o ON o.alert_id = a.id"
        " WHERE a.budget_id = $1 ORDER BY o.seq",
        budget.id,
    )
    assert [tuple(a) for a in alerts] == [
        (Decimal("0.5"), Decimal("0.0016"), Decimal("0.0020"), HOOK),
        (Decimal("0.8"), Decimal("0.0016"), Decimal("0.0020"), HOOK),
        (Decimal("1"), Decimal("0.0020"), Decimal("0.0020"), HOOK),
    ]
    assert await rollup_differences(db) == {}


HOOK = "https://hooks.example.com/one-trip"

# Every row a writer inserts or upserts into the rollups and the budgets' tables, in order
# (an upsert fires BEFORE INSERT whether it inserts or updates; the webhook dispatcher's
# updates of the outbox, which no recording makes, are left out).
_TOUCHES = """
CREATE TABLE touches (n bigserial PRIMARY KEY, tbl text NOT NULL);
CREATE FUNCTION touched() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO touches (tbl) VALUES (TG_TABLE_NAME);
    RETURN NEW;
END $$;
"""


async def _touched(db: asyncpg.Connection) -> list[str]:
    """The tables touched since the last call, each run of one table once."""
    names = [r["tbl"] for r in await db.fetch("DELETE FROM touches RETURNING n, tbl")]
    return [t for i, t in enumerate(names) if i == 0 or names[i - 1] != t]


async def test_a_trip_locks_rows_in_the_long_ways_order(
    client: AsyncTestClient[Any], db: asyncpg.Connection, paths: list[str]
) -> None:
    await db.execute(_TOUCHES)
    tables = [
        r["tablename"]
        for r in await db.fetch("SELECT tablename FROM pg_tables WHERE tablename LIKE 'rollup_%'")
    ]
    for table in [*tables, "budget_spend", "alerts", "alert_outbox"]:
        await db.execute(
            f"CREATE TRIGGER touched BEFORE INSERT ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION touched()"
        )
    await create_budget(
        db, watched_global_budget("0.0008", [Decimal("0.5"), Decimal("1")], HOOK, None)
    )
    await db.execute("DELETE FROM touches")
    # The first group goes the long way, the second in one trip; each passes a threshold.
    await post(client, opus_event("t-1", "0.0004", occurred_at=AT))
    long_way = await _touched(db)
    await post(client, opus_event("t-2", "0.0004", occurred_at=AT))
    one_trip = await _touched(db)
    assert paths == ["long", "trip"]
    # The rollups first (PostgreSQL's order of a statement's CTEs, the same in both), then
    # the budget's spend row, its alert and the alert's delivery: no two writers can each
    # hold a row the other waits for.
    assert one_trip == long_way
    assert long_way[-3:] == ["budget_spend", "alerts", "alert_outbox"]
    assert set(long_way[:-3]) == set(tables)
    assert len(long_way) == len(tables) + 3


@pytest.mark.slow
async def test_trips_beside_the_long_way_count_every_spend_once(
    server_factory: Any, db: asyncpg.Connection
) -> None:
    server = server_factory()
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        await customer_on_plan(http, "acme", MARKUP_PLAN)
        limits = {
            ("global", None): ("0.48", [0.5, 1]),
            ("agent", "ACHEEVY"): ("0.32", [1]),
            ("customer", "acme"): ("0.16", [1]),
        }
        budgets = {}
        for (scope, scope_id), (limit, thresholds) in limits.items():
            made = await http.post(
                "/v1/budgets",
                json={
                    "scope": scope,
                    "scope_id": scope_id,
                    "period": "lifetime",
                    "limit_usd": limit,
                    "thresholds": thresholds,
                },
            )
            assert made.status_code == 201, made.text
            budgets[scope] = made.json()["id"]
        # 48 calls of 0.01 USD at once, on six jobs: two thirds by ACHEEVY; the events of
        # job-0 and job-1 name customer acme, whose first claims its job the long way.
        events = []
        for n in range(48):
            event = opus_event(
                f"side-{n}",
                "0.01",
                occurred_at=AT,
                job_id=f"job-{n % 6}",
                agent="ORACLE" if n % 3 == 2 else "ACHEEVY",
            )
            if n % 6 < 2:
                event["customer_id"] = "acme"
            events.append(event)
        answers = await asyncio.gather(*(http.post("/v1/events", json=e) for e in events))
        assert [a.status_code for a in answers] == [201] * 48
    spent = {
        r["budget_id"]: r["spent_usd"]
        for r in await db.fetch("SELECT budget_id, spent_usd FROM budget_spend")
    }
    # 48 × 0.01 in all; 32 by ACHEEVY; 16 on acme's two jobs.
    assert spent == {
        budgets["global"]: Decimal("0.48"),
        budgets["agent"]: Decimal("0.32"),
        budgets["customer"]: Decimal("0.16"),
    }
    alerts = await db.fetch("SELECT budget_id, threshold, spent_usd FROM alerts")
    assert sorted((a["budget_id"], a["threshold"]) for a in alerts) == sorted(
        [
            (budgets["global"], Decimal("0.5")),
            (budgets["global"], Decimal("1")),
            (budgets["agent"], Decimal("1")),
            (budgets["customer"], Decimal("1")),
        ]
    )
    for a in alerts:
        # The spend after the group that passed it: a limit is reached by the last group.
        if a["threshold"] == 1:
            assert a["spent_usd"] == spent[a["budget_id"]]
        else:
            assert Decimal("0.24") <= a["spent_usd"] <= Decimal("0.48")
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 48
    assert await rollup_differences(db) == {}


@pytest.mark.slow
def test_a_trips_alert_is_delivered_without_waiting_for_the_poll(
    server_factory: Any, receiver: Receiver
) -> None:
    secret = "whsec_" + base64.b64encode(b"luc-one-trip-test-key-0123456789").decode()
    # A poll a minute apart: a delivery within seconds is one the trip woke.
    server = server_factory(
        LUC_WORKERS="1",
        LUC_WEBHOOK_SECRET=secret,
        LUC_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        LUC_WEBHOOK_POLL_SECONDS="60",
    )
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        made = http.post(
            "/v1/budgets",
            json={
                "scope": "global",
                "period": "lifetime",
                "limit_usd": "0.0010",
                "thresholds": [0.5],
                "webhook_url": receiver.url(),
            },
        )
        assert made.status_code == 201, made.text
        # The first group opens the long way, below 0.5 × 0.0010; the second, a trip,
        # takes the spend to 0.0006, past it.
        for n, usd in enumerate(["0.0002", "0.0004"]):
            sent = http.post("/v1/events", json=opus_event(f"w-{n}", usd, occurred_at=AT))
            assert sent.status_code == 201, sent.text
        wait_for(lambda: len(receiver.received()) == 1, 10, "the alert's delivery")
        alert = json.loads(receiver.received()[0].body)
        assert alert["type"] == "budget.threshold_crossed"
        assert Decimal(alert["data"]["spent_usd"]) == Decimal("0.0006")


class _Failures:
    """A connection that keeps every error its ``fetchrow`` raised."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.errors: list[asyncpg.PostgresError] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)

    async def fetchrow(self, *args: Any) -> Any:
        try:
            return await self.conn.fetchrow(*args)
        except asyncpg.PostgresError as exc:
            self.errors.append(exc)
            raise


async def test_a_session_has_its_opening_before_its_first_trip(
    database_url: str, paths: list[str]
) -> None:
    # Left to fail first, a session's first trip logged an ERROR in PostgreSQL's log
    # (schema "pg_temp" does not exist) for every new pooled connection.
    trip, cache, plans = OneTrip(), CatalogCache(), PlanCache()
    for round_ in range(2):
        conn = await connect(database_url)
        try:
            watched = _Failures(conn)
            for n in range(2):
                event = usage_event(f"s-{round_}-{n}", job_id="job-s")
                outcome = await record_batch(
                    cast(Connection, watched), cache, [event], plan_cache=plans, one_trip=trip
                )
                assert [r.status for r in outcome.results] == ["accepted"]
            assert watched.errors == []
        finally:
            await conn.close()
    # The first opening the long way; then each new session's first group in one trip.
    assert paths == ["long", "trip", "trip", "trip"]


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
    # Budgets are counted in the trip; credit accounts want statements of their own.
    trip.learn({"budgets_exist": True, "credits_exist": False}, [])  # type: ignore[arg-type]
    assert trip.assumed(_events(usage_event("f", job_id="job-a"))) is not None
    trip.learn({"budgets_exist": False, "credits_exist": True}, [])  # type: ignore[arg-type]
    assert trip.assumed(_events(usage_event("g", job_id="job-a"))) is None
