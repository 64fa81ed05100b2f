"""A job's invoice and its customer's monthly invoice issued at the same moment.

They lock different things (the job's row; the customer's month), so both can draft the
same October entries. The test makes them meet: it holds the invoice number counter's row,
lets both draft and queue behind it, then lets go. The first to get a number issues; the
second must be refused with 409 and its reason, never a 500, and no number is spent on it.
"""

from __future__ import annotations

import asyncio
import time
from datetime import date

import asyncpg

from service.db import connect
from service.errors import ConflictError
from service.invoices.monthly import issue_month_invoice
from service.invoices.service import issue_invoice
from tests.scenarios.test_invoices import number, year_of
from tests.scenarios.test_monthly_invoices import acme_with_usage, created, luc
from tests.support.clock import clear_of_end
from tests.support.databases import connected
from tests.support.settings import settings_for

OCTOBER = date(2026, 10, 1)


async def wait_for_lock_waiters(conn: asyncpg.Connection, count: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        if waiting >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} issuers never queued behind the counter's row")


async def test_a_job_invoice_and_the_month_s_invoice_racing_bill_each_entry_once(
    database_url: str, admin_key: str
) -> None:
    # All three invoices of one year (their numbers follow each other in its series).
    await clear_of_end("year")
    async with luc(database_url, admin_key) as client:
        await acme_with_usage(client)
        # job-c's invoice first: the year's counter row exists (LUC-<year>-000001).
        first = await created(await client.post("/v1/jobs/job-c/invoices"))
        year = year_of(first)
        assert first["number"] == number(1, year)
    issuer = settings_for(database_url).issuer
    holder, job_conn, month_conn = [await connect(database_url) for _ in range(3)]
    try:
        holder_tx = holder.transaction()
        await holder_tx.start()
        await holder.execute("SELECT 1 FROM invoice_counters WHERE year = $1 FOR UPDATE", year)
        job_issue = asyncio.create_task(issue_invoice(job_conn, "job-a", issuer))
        month_issue = asyncio.create_task(
            issue_month_invoice(month_conn, "acme", OCTOBER, issuer, None)
        )
        await wait_for_lock_waiters(holder, 2)
        await holder_tx.rollback()
        results = await asyncio.gather(job_issue, month_issue, return_exceptions=True)
    finally:
        for conn in (holder, job_conn, month_conn):
            await conn.close()
    issued = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, BaseException)]
    assert len(issued) == 1 and len(refused) == 1, results
    (error,) = refused
    assert isinstance(error, ConflictError)
    assert "an invoice issued at the same moment covers some of the entries" in str(error)
    # The winner took number 2; the loser spent none, so the next invoice is number 3.
    assert issued[0].number == number(2, year)
    async with luc(database_url, admin_key) as client:
        if isinstance(results[0], ConflictError):
            # The month won: job-a's next invoice bills its November call (0.05625) alone,
            # never the two October ones the monthly invoice covers.
            again = await created(await client.post("/v1/jobs/job-a/invoices"))
            assert (again["events"], again["subtotal_usd"]) == (1, "0.05625")
            assert again["period_start"] == "2026-11-02T00:00:00Z"
        else:  # job-a won: the month bills job-b (0.175) and the minimum, never job-a again
            again = await created(
                await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
            )
            jobs = {line.get("job_id") for line in again["lines"]}
            assert "job-a" not in jobs and "job-b" in jobs
        assert again["number"] == number(3, year)


# The database clock, made to stand still where a test puts it: functions named like
# PostgreSQL's in a schema searched before pg_catalog (which, named last in search_path,
# is searched last) answer from a one-row table the test moves forward.
FAKE_CLOCK = """
CREATE SCHEMA fake_time;
CREATE TABLE fake_time.clock (at timestamptz NOT NULL);
INSERT INTO fake_time.clock VALUES ('2026-12-31T23:59:59.9Z');
CREATE FUNCTION fake_time.now() RETURNS timestamptz
    LANGUAGE sql STABLE AS 'SELECT at FROM fake_time.clock';
CREATE FUNCTION fake_time.clock_timestamp() RETURNS timestamptz
    LANGUAGE sql VOLATILE AS 'SELECT at FROM fake_time.clock';
"""


async def test_an_issue_waiting_on_the_counter_across_new_year_is_numbered_and_dated_in_it(
    database_url: str, admin_key: str
) -> None:
    """The issue starts at 2026-12-31T23:59:59.9Z and queues behind another holding the
    counters; it gets them at 2027-01-01T00:00:00.1Z. Its number's year and its
    ``issued_at`` are one instant, taken after the lock: LUC-2027-000001 dated 2027 (the
    year read at the transaction's start numbered it LUC-2026-… and dated it 2027)."""
    async with luc(database_url, admin_key) as client:
        await acme_with_usage(client)
    issuer = settings_for(database_url).issuer
    holder, issuing = await connect(database_url), await connect(database_url)
    try:
        await holder.execute(FAKE_CLOCK)
        path = await issuing.fetchval("SHOW search_path")
        await issuing.execute(f"SET search_path = fake_time, {path}, pg_catalog")
        assert str(await issuing.fetchval("SELECT now()")) == "2026-12-31 23:59:59.900000+00:00"
        holder_tx = holder.transaction()
        await holder_tx.start()
        await holder.execute("LOCK TABLE invoice_counters IN EXCLUSIVE MODE")
        issue = asyncio.create_task(issue_invoice(issuing, "job-c", issuer))
        await wait_for_lock_waiters(holder, 1)
        # The holder's lock is on the counters table, not on the clock's row.
        async with connected(database_url) as clock:
            await clock.execute("UPDATE fake_time.clock SET at = '2027-01-01T00:00:00.1Z'")
        await holder_tx.rollback()
        invoice = await issue
    finally:
        for conn in (holder, issuing):
            await conn.close()
    assert invoice.number == "LUC-2027-000001"
    assert invoice.document["issued_at"] == "2027-01-01T00:00:00.100000Z"
    assert invoice.document["due_date"] == "2027-01-31"
    async with connected(database_url) as db:
        stored = await db.fetchrow(
            "SELECT year, seq, issued_at FROM invoices WHERE number = $1", invoice.number
        )
        assert stored is not None
        assert (stored["year"], stored["seq"]) == (2027, 1)
        assert await db.fetchval("SELECT count(*) FROM invoice_counters WHERE year = 2026") == 0
