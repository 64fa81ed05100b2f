"""The ledger and the usage events are facts: PostgreSQL itself refuses to UPDATE or DELETE
them, through the parent table and on every partition of the ledger, the default one
included (TRUNCATE: tests/integration/test_ledger_partitions.py).

Each partition gets a row first: the refusal is a row trigger, so a statement that
touches no row would prove nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import partial

import asyncpg
import pytest

from service.catalog.service import CatalogCache
from service.ledger.service import ensure_months_ahead
from service.recording.service import record_batch
from tests.support.events import usage_event

# Each ledger partition and the instant its range starts at (NULL: the default one).
PARTITIONS = """
SELECT c.relname AS name,
       (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'FROM \\(''([^'']+)''\\)'))[1]
           AS starts
FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
WHERE i.inhparent = 'ledger_entries'::regclass
ORDER BY c.relname
"""

CHANGES = [
    "UPDATE {table} SET cost_usd = 0",
    "UPDATE {table} SET agent = 'someone else'",
    "DELETE FROM {table}",
]


# A Sonnet call: where it lands is the point, not what it costs.
event = partial(
    usage_event,
    job_id="job-facts",
    agent="ORACLE",
    model="anthropic/claude-sonnet-4.5",
    output_tokens=200,
)


@pytest.fixture
async def one_row_per_partition(db: asyncpg.Connection) -> list[str]:
    """Every ledger partition holds one entry; returns the partitions' names."""
    await ensure_months_ahead(db)
    partitions = await db.fetch(PARTITIONS)
    events = []
    for n, partition in enumerate(partitions):
        starts = partition["starts"]
        # The default partition takes what no month does: a month long before any.
        at = datetime(2001, 2, 3, tzinfo=UTC) if starts is None else datetime.fromisoformat(starts)
        events.append(event(f"fact-{n}", occurred_at=at))
    await record_batch(db, CatalogCache(), events)
    placed = await db.fetch(
        "SELECT tableoid::regclass::text AS part, count(*) FROM ledger_entries GROUP BY 1"
    )
    names = [p["name"] for p in partitions]
    assert {r["part"]: r["count"] for r in placed} == dict.fromkeys(names, 1)
    assert "ledger_entries_default" in names and len(names) >= 3
    return names


@pytest.mark.parametrize("change", CHANGES)
async def test_no_ledger_entry_can_be_changed_or_deleted_on_any_partition(
    db: asyncpg.Connection, one_row_per_partition: list[str], change: str
) -> None:
    for table in ["ledger_entries", *one_row_per_partition]:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await db.execute(change.format(table=table))
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == len(one_row_per_partition)


@pytest.mark.parametrize(
    "change",
    [
        "UPDATE event_keys SET occurred_at = occurred_at + interval '1 day'",
        "UPDATE event_keys SET event_id = 'another id'",
        "DELETE FROM event_keys",
        "TRUNCATE event_keys",
    ],
)
async def test_no_event_key_can_be_changed_or_deleted(db: asyncpg.Connection, change: str) -> None:
    await record_batch(db, CatalogCache(), [event("fact-1", occurred_at=datetime.now(UTC))])
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await db.execute(change)
    assert await db.fetchval("SELECT count(*) FROM event_keys") == 1
