"""The ledger partitioned by UTC month (migration 0006) and kept ahead by the service."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import partial

import asyncpg
import pytest

from service.catalog.service import CatalogCache
from service.ledger.months import ensure_months
from service.ledger.service import ensure_months_ahead
from service.recording.service import record_batch
from tests.support.clock import clear_of_end, next_month_start
from tests.support.events import usage_event

# A Sonnet call: where it lands is the point, not what it costs.
event = partial(
    usage_event,
    job_id="job-p",
    agent="ORACLE",
    model="anthropic/claude-sonnet-4.5",
    output_tokens=200,
)


def month_partition(when: datetime) -> str:
    return f"ledger_entries_{when:%Y_%m}"


async def test_entries_land_in_their_month_and_far_ones_in_the_default(
    db: asyncpg.Connection,
) -> None:
    now = await clear_of_end("month")  # the month PostgreSQL makes partitions from is now's
    await ensure_months_ahead(db)
    long_ago = datetime(2001, 2, 3, tzinfo=UTC)
    await record_batch(
        db, CatalogCache(), [event("now", occurred_at=now), event("old", occurred_at=long_ago)]
    )

    rows = await db.fetch(
        "SELECT event_id, tableoid::regclass::text AS part FROM ledger_entries ORDER BY 1"
    )
    assert [tuple(r) for r in rows] == [
        ("now", month_partition(now)),
        ("old", "ledger_entries_default"),
    ]


async def test_months_ahead_are_made_once(db: asyncpg.Connection) -> None:
    await ensure_months_ahead(db)  # whatever the template already had
    assert await ensure_months_ahead(db) == 0
    assert await ensure_months_ahead(db, months=4) == 2  # two more months ahead


async def test_the_month_before_this_one_is_made_too(db: asyncpg.Connection) -> None:
    # A new installation's first events are often of the month before (a month's
    # stragglers, a demo's last days): in the default partition, that month could never
    # have its own.
    now = await clear_of_end("month")
    before = now.replace(day=1) - timedelta(days=1)
    await db.execute(f"DROP TABLE IF EXISTS {month_partition(before)}")  # empty: a new one
    assert await ensure_months_ahead(db) == 1
    await record_batch(db, CatalogCache(), [event("late", occurred_at=before)])
    part = await db.fetchval(
        "SELECT tableoid::regclass::text FROM ledger_entries WHERE event_id = 'late'"
    )
    assert part == month_partition(before)


async def test_a_month_with_rows_in_the_default_is_left_alone(db: asyncpg.Connection) -> None:
    long_ago = datetime(2001, 2, 3, tzinfo=UTC)
    await record_batch(db, CatalogCache(), [event("old", occurred_at=long_ago)])

    made = await db.fetchval("SELECT luc_ensure_ledger_months('2001-01-01', 0)")

    # Every month from January 2001 to now but February 2001, which waits in the default.
    assert await db.fetchval("SELECT to_regclass('ledger_entries_2001_02')") is None
    assert await db.fetchval("SELECT to_regclass('ledger_entries_2001_03')") is not None
    assert made > 12 * 20
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 1


@pytest.mark.parametrize("table", ["ledger_entries", "ledger_entries_default"])
async def test_no_partition_can_be_truncated(db: asyncpg.Connection, table: str) -> None:
    await ensure_months_ahead(db)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await db.execute(f"TRUNCATE {table}")
    month = month_partition(datetime.now(UTC))
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await db.execute(f"TRUNCATE {month}")


async def test_the_cron_command_reports_what_it_made_and_what_waits_in_the_default(
    db: asyncpg.Connection,
) -> None:
    """``luc partitions ensure``'s work: run twice, it makes the months once."""
    now = await clear_of_end("month")  # the months named here are the ones PostgreSQL makes
    coming = [
        f"ledger_entries_{(now.year * 12 + now.month - 1 + n) // 12}_"
        f"{(now.month - 1 + n) % 12 + 1:02d}"
        for n in range(5)
    ]
    await ensure_months_ahead(db, months=0)  # the month before, whatever the template had
    for name in coming[:3]:
        await db.execute(f"DROP TABLE IF EXISTS {name}")  # empty: the template is new
    await record_batch(
        db, CatalogCache(), [event("far", occurred_at=datetime(2001, 2, 3, tzinfo=UTC))]
    )

    first = await ensure_months(db, ahead=4)
    assert first.created == 5
    assert first.months[-5:] == coming
    assert first.default_rows == 1
    assert first.lines() == [
        f"5 month partitions created; {len(first.months)} present "
        f"({first.months[0]} … {coming[-1]})",
        "1 ledger entries are in ledger_entries_default (months without a partition when "
        "they were recorded: late or far-off events); they count as any other, nothing "
        "needs doing",
    ]
    again = await ensure_months(db, ahead=4)
    assert (again.created, again.months) == (0, first.months)


async def test_this_month_is_made_whatever_time_zone_the_session_has(
    db: asyncpg.Connection,
) -> None:
    """``luc partitions ensure`` (cron) and ``luc migrate`` connect without LUC's pool, in
    the server's default time zone. In the last hour of a UTC month it is already the next
    month at UTC+14: "this month" read in the session's zone skipped the UTC month still
    running, whose remaining entries then went to the default partition for good (a month
    with rows there is never made). The database's clock is pinned to that hour (functions
    named like PostgreSQL's, in a schema searched first, as in the invoice race tests)."""
    now = await clear_of_end("month")
    this_month = month_partition(now)
    last_hour = next_month_start(now) - timedelta(hours=1)
    await db.execute(f"DROP TABLE IF EXISTS {this_month}")  # empty: the template is new
    await db.execute(
        "CREATE SCHEMA fake_time;"
        " CREATE FUNCTION fake_time.now() RETURNS timestamptz LANGUAGE sql STABLE"
        f" AS $$SELECT timestamptz '{last_hour.isoformat()}'$$"
    )
    path = await db.fetchval("SHOW search_path")
    await db.execute(f"SET search_path = fake_time, {path}, pg_catalog")
    await db.execute("SET TIME ZONE 'Etc/GMT-14'")  # UTC+14 (POSIX signs are reversed)
    assert str(await db.fetchval("SELECT now()::date")) == f"{next_month_start(now):%Y-%m-%d}"

    await ensure_months_ahead(db)

    assert await db.fetchval("SELECT to_regclass($1) IS NOT NULL", this_month)
