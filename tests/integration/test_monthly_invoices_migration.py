"""Migration 0027 (monthly invoices) taken back and forth on a ledger with invoices.

Its downgrade keeps a job's issued invoice (documents are append-only) and refuses while a
monthly invoice exists, which the older schema cannot hold; upgrading again serves the job's
invoice exactly as issued.
"""

from __future__ import annotations

import asyncio

import pytest

from service.db.migrations import migrate_sync, schema_revision
from tests.scenarios.test_invoices import number, year_of
from tests.scenarios.test_monthly_invoices import acme_with_usage, created, luc
from tests.support.databases import connected
from tests.support.migrations import downgrade_before, revision_before

REVISION = "0027_monthly_invoices"


async def test_the_downgrade_keeps_a_job_s_invoice_and_the_upgrade_serves_it_as_issued(
    database_url: str, admin_key: str
) -> None:
    async with luc(database_url, admin_key) as client:
        await acme_with_usage(client)
        issued = await created(await client.post("/v1/jobs/job-c/invoices"))
        # The first number of the year it was issued in (its ``issued_at``'s UTC year).
        expected = number(1, year_of(issued))
        assert (issued["number"], issued["total_usd"]) == (expected, "0.06")
    await downgrade_before(database_url, REVISION)
    async with connected(database_url) as conn:
        assert await schema_revision(conn) == revision_before(REVISION)
        row = await conn.fetchrow("SELECT job_id, total_usd, digest FROM invoices")
        assert row is not None
        assert (row["job_id"], str(row["total_usd"])) == ("job-c", "0.06")
        assert row["digest"] == issued["digest"]
        columns = {
            r["column_name"]
            for r in await conn.fetch(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'invoice_lines'"
            )
        }
        assert "line_type" not in columns and "plan_version" not in columns
    await asyncio.to_thread(migrate_sync, database_url)
    async with luc(database_url, admin_key) as client:
        again = await client.get(f"/v1/invoices/{issued['number']}")
        assert again.status_code == 200, again.text
        assert again.json() == issued


async def test_the_downgrade_refuses_while_a_monthly_invoice_exists(
    database_url: str, admin_key: str
) -> None:
    async with luc(database_url, admin_key) as client:
        await acme_with_usage(client)
        month = await created(
            await client.post("/v1/customers/acme/invoices", json={"month": "2026-10"})
        )
    with pytest.raises(Exception, match="monthly invoices have been issued"):
        await downgrade_before(database_url, REVISION)
    async with connected(database_url) as conn:
        assert await schema_revision(conn) != revision_before(REVISION)
        assert await conn.fetchval("SELECT count(*) FROM invoices WHERE month IS NOT NULL") == 1
    async with luc(database_url, admin_key) as client:
        assert (await client.get(f"/v1/invoices/{month['number']}")).json() == month
