"""record_batch on its own: the staged write path, called the ways the service calls it.

Costs are worked out by hand from the AIMS catalog (anthropic/claude-sonnet-4.5: $3 input,
$15 output per million tokens): 1,000 input + 200 output tokens cost
0.003 + 0.003 = $0.006; 2,000 input + 100 output cost 0.006 + 0.0015 = $0.0075.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import asyncpg
import pytest

from service.budgets.models import NewBudget
from service.budgets.service import create_budget
from service.catalog.service import CatalogCache
from service.db import connect
from service.ingest.models import UsageEvent
from service.ledger.service import INLINE_LIMIT
from service.locks import REPRICING_LOCK_KEY, lock_repricing
from service.recording.models import ACCEPTED, CONFLICT, DUPLICATE
from service.recording.service import record_batch
from tests.support.databases import connected
from tests.support.events import usage_event
from tests.support.ledger_truth import STORED_EVENTS
from tests.support.waiting import wait_until

MODEL = "anthropic/claude-sonnet-4.5"
WHEN = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def sonnet_call(event_id: str, input_tokens: int, output_tokens: int) -> UsageEvent:
    """A call of job-a at WHEN whose attributes name it, to tell which content was stored."""
    return usage_event(
        event_id,
        occurred_at=WHEN,
        job_id="job-a",
        agent="ORACLE",
        model=MODEL,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        attributes={"step": event_id},
    )


@pytest.fixture
async def writer(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    async with connected(database_url) as conn:
        yield conn


async def job_cost(db: asyncpg.Connection, job_id: str) -> tuple[Decimal, int]:
    row = await db.fetchrow("SELECT cost_usd, events FROM rollup_jobs WHERE job_id = $1", job_id)
    assert row is not None
    return row["cost_usd"], row["events"]


async def test_a_batch_stores_events_charges_and_rollups(
    writer: asyncpg.Connection, db: asyncpg.Connection
) -> None:
    outcome = await record_batch(
        writer, CatalogCache(), [sonnet_call("e1", 1000, 200), sonnet_call("e2", 2000, 100)]
    )

    assert [r.status for r in outcome.results] == [ACCEPTED, ACCEPTED]
    assert await job_cost(db, "job-a") == (Decimal("0.0135"), 2)
    stored = await db.fetchrow(
        f"SELECT model, attributes FROM {STORED_EVENTS} WHERE event_id = 'e2'"
    )
    assert stored is not None and dict(stored) == {"model": MODEL, "attributes": {"step": "e2"}}
    charges = await db.fetch(
        "SELECT event_id, kind, cost_usd, price_input FROM ledger_entries ORDER BY event_id"
    )
    assert [tuple(r) for r in charges] == [
        ("e1", "charge", Decimal("0.006"), Decimal("3.00")),
        ("e2", "charge", Decimal("0.0075"), Decimal("3.00")),
    ]


async def test_a_lone_event_is_recorded_in_four_round_trips(
    writer: asyncpg.Connection, db: asyncpg.Connection
) -> None:
    """Begin with the re-pricing lock, open (stamps, the job locked), the statement that
    stores, appends and rolls up, commit: a lone event waits for each round trip, so the
    lock shares the BEGIN's and the job's lock the opening statement's."""
    cache = CatalogCache()
    await record_batch(writer, cache, [sonnet_call("e1", 1000, 200)])  # types introspected
    sent: list[str] = []
    writer.add_query_logger(lambda record: sent.append(record.query))

    outcome = await record_batch(writer, cache, [sonnet_call("e2", 2000, 100)])

    assert [r.status for r in outcome.results] == [ACCEPTED]
    # asyncpg calls its query loggers soon after each query, not at once.
    await wait_until(lambda: "COMMIT" in sent, 5, "the commit to be logged")
    assert len(sent) == 4, sent
    assert sent[0] == f"BEGIN; SELECT pg_advisory_xact_lock_shared({REPRICING_LOCK_KEY})"
    assert "locked_jobs" in sent[1] and "INSERT INTO event_keys" in sent[2]
    assert sent[3] == "COMMIT"
    assert await job_cost(db, "job-a") == (Decimal("0.0135"), 2)
    assert not writer.is_in_transaction()


async def test_a_batch_the_database_refuses_leaves_no_transaction_nor_lock_behind(
    writer: asyncpg.Connection, db: asyncpg.Connection
) -> None:
    """The transaction is begun by hand (with the lock): a failure inside must roll it
    back, or the connection would go back to its pool in a transaction holding the lock
    that a new catalog version waits for."""
    await db.execute(
        "ALTER TABLE ledger_entries ADD CONSTRAINT test_refuses CHECK (input_tokens <> 7)"
    )
    cache = CatalogCache()
    with pytest.raises(asyncpg.CheckViolationError):
        await record_batch(writer, cache, [sonnet_call("e1", 1000, 200), sonnet_call("e2", 7, 1)])

    assert not writer.is_in_transaction()
    held = await db.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1",
        writer.get_server_pid(),
    )
    assert held == 0
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 0
    # The connection records again at once.
    outcome = await record_batch(writer, cache, [sonnet_call("e1", 1000, 200)])
    assert [r.status for r in outcome.results] == [ACCEPTED]
    assert await job_cost(db, "job-a") == (Decimal("0.006"), 1)


async def test_two_batches_in_one_longer_transaction_count_each_event_once(
    writer: asyncpg.Connection, db: asyncpg.Connection
) -> None:
    """The scratch tables keep their rows until the commit: the second batch must not take
    the first batch's staged events or new entries for its own."""
    cache = CatalogCache()
    async with writer.transaction():
        first = await record_batch(writer, cache, [sonnet_call("e1", 1000, 200)])
        second = await record_batch(writer, cache, [sonnet_call("e2", 2000, 100)])

    assert [r.status for r in (*first.results, *second.results)] == [ACCEPTED, ACCEPTED]
    assert await job_cost(db, "job-a") == (Decimal("0.0135"), 2)
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 2


async def test_replays_on_the_same_connection_append_nothing(
    writer: asyncpg.Connection, db: asyncpg.Connection
) -> None:
    cache = CatalogCache()
    await record_batch(writer, cache, [sonnet_call("e1", 1000, 200)])

    again = await record_batch(
        writer,
        cache,
        [
            sonnet_call("e1", 1000, 200),  # the same event again
            sonnet_call("e2", 2000, 100),  # new
            sonnet_call("e1", 1000, 999),  # the id reused with other tokens
        ],
    )

    assert [r.status for r in again.results] == [DUPLICATE, ACCEPTED, CONFLICT]
    assert again.results[2].reason is not None and "output_tokens" in again.results[2].reason
    assert await job_cost(db, "job-a") == (Decimal("0.0135"), 2)
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 2


async def test_a_budget_created_beside_a_batch_in_flight_counts_its_spend(
    writer: asyncpg.Connection, db: asyncpg.Connection, database_url: str
) -> None:
    """Creating a budget waits for the batch holding the lock, so its backfill sees that
    batch's spend (without the wait, neither would count the other)."""
    other = await connect(database_url)
    try:
        transaction = writer.transaction()
        await transaction.start()
        await lock_repricing(writer, shared=True)  # what a batch holds while it records
        creating = asyncio.create_task(
            create_budget(
                other,
                NewBudget(
                    scope="job",
                    scope_id="job-a",
                    period="month",
                    limit_usd=Decimal("1"),
                    thresholds=[Decimal("0.5")],
                    hard=False,
                    webhook_url=None,
                    webhook_secret=None,
                ),
            )
        )
        # Wait until PostgreSQL shows the budget's transaction queued on the lock.
        await wait_until(
            lambda: db.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 "
                "AND pid = $2 AND NOT granted",
                REPRICING_LOCK_KEY,
                other.get_server_pid(),
            ),
            10,
            "the budget's creation to wait for the lock",
        )
        assert not creating.done()
        await record_batch(writer, CatalogCache(), [sonnet_call("e1", 1000, 200)])
        await transaction.commit()
        budget = await asyncio.wait_for(creating, timeout=10)
    finally:
        await other.close()

    spent = await db.fetchval("SELECT spent_usd FROM budget_spend WHERE budget_id = $1", budget.id)
    assert spent == Decimal("0.006")


@pytest.mark.parametrize("size", [INLINE_LIMIT, INLINE_LIMIT + 1])
async def test_small_groups_inline_and_batches_by_copy_give_the_same_ledger(
    writer: asyncpg.Connection, db: asyncpg.Connection, size: int
) -> None:
    """Both staging paths (inline JSON up to INLINE_LIMIT events, binary COPY above), each
    twice inside one longer transaction, with a replay of the first batch's events."""
    cache = CatalogCache()
    first = [sonnet_call(f"a{n}", 1000, 200) for n in range(size)]
    second = [sonnet_call(f"b{n}", 2000, 100) for n in range(size)]
    async with writer.transaction():
        await record_batch(writer, cache, first)
        outcome = await record_batch(writer, cache, [*second, first[0]])

    assert [r.status for r in outcome.results] == [ACCEPTED] * size + [DUPLICATE]
    # size × $0.006 + size × $0.0075
    assert await job_cost(db, "job-a") == (Decimal("0.0135") * size, 2 * size)
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 2 * size
    stored = await db.fetchval(f"SELECT attributes FROM {STORED_EVENTS} WHERE event_id = 'b1'")
    assert stored == {"step": "b1"}
