"""Migration 0020 (credit notes, issuer and bill-to, the internal view) on a ledger that
already holds an invoice issued by an earlier LUC: the invoice is served, presented and
verified exactly as it was issued, its numbers' series goes on, and the downgrade gives
the older schema back while no credit note exists (and refuses once one does).

The earlier invoice is written as LUC wrote it before 0020, at that revision: its document
(the free-text customer, each line's actual cost, no issuer, kind or credits) with its
digest, its lines and the ledger entries it covers.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.catalog.service import CatalogCache
from service.db.migrations import migrate_sync, schema_revision
from service.recording.service import record_batch
from tests.support.commands import luc_on
from tests.support.databases import connected
from tests.support.events import usage_event
from tests.support.keys import bearer
from tests.support.migrations import downgrade_before, revision_before
from tests.support.settings import settings_for

D = Decimal
REVISION = "0020_invoices_to_pay"
SONNET = "anthropic/claude-sonnet-4.5"
FLASH = "google/gemini-3.0-flash"
ISSUED_AT = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)


PRICES = {
    SONNET: {
        "input": "3",
        "output": "15",
        "cache_read": "0.3",
        "cache_write": "3.75",
        "reasoning": "15",
        "per_request": "0",
    },
    FLASH: {
        "input": "0.1",
        "output": "0.4",
        "cache_read": "0.01",
        "cache_write": "0.1",
        "reasoning": "0.4",
        "per_request": "0",
    },
}


TOKENS = ("input_tokens", "cached_input_tokens", "cache_write_tokens", "output_tokens")
PRICE_CLASSES = ("input", "output", "cache_read", "cache_write", "reasoning", "per_request")


def old_line(
    agent: str, model: str, names: tuple[str, str], tokens: tuple[int, ...], money: tuple[str, str]
) -> dict[str, Any]:
    """A line as issued then: ``names`` the model's name and tier, ``money`` its amount and
    actual cost."""
    return {
        "agent": agent,
        "model": model,
        "model_name": names[0],
        "provider": "openrouter",
        "catalog_version": 1,
        "tier": names[1],
        "events": 1,
        **dict(zip(TOKENS, tokens, strict=True)),
        "reasoning_tokens": 0,
        "long_context_from": None,
        "rate": "base",
        "unit_prices": PRICES[model],
        "amount_usd": money[0],
        "actual_cost_usd": money[1],
    }


def old_document(entry_ids: list[int]) -> dict[str, Any]:
    """An invoice as LUC issued it before 0020: 0.047205 + 0.0022 = 0.049405 → 0.05."""
    return {
        "number": "LUC-2026-000001",
        "job_id": "job-old",
        "issued_at": "2026-11-21T09:30:00Z",
        "currency": "USD",
        "customer": "Acme Corp, Dept. 7",
        "title": "Q4 study",
        "reference": None,
        "follow_up_of": None,
        "period_start": "2026-11-20T10:00:00Z",
        "period_end": "2026-11-20T10:00:00Z",
        "lines": [
            # 12,345 × 3 + 678 × 15 = 47,205 per 1M; the provider reported 0.045
            old_line(
                "ACHEEVY",
                SONNET,
                ("Claude Sonnet 4.5", "premium"),
                (12_345, 0, 0, 678),
                ("0.047205", "0.045"),
            ),
            # 10,000 × 0.10 + 40,000 × 0.01 + 2,000 × 0.40 = 2,200 per 1M
            old_line(
                "ORACLE",
                FLASH,
                ("Gemini 3.0 Flash", "fast"),
                (50_000, 40_000, 0, 2_000),
                ("0.0022", "0.0022"),
            ),
        ],
        "events": 2,
        "subtotal_usd": "0.049405",
        "rounding_rule": "total = subtotal rounded once to 0.01 USD, half up",
        "rounding_usd": "0.000595",
        "total_usd": "0.05",
        "covered_entries": 2,
        "entries_sha256": hashlib.sha256(
            ",".join(str(i) for i in sorted(entry_ids)).encode()
        ).hexdigest(),
        "unpriced_events": 0,
        "notes": [],
    }


async def issue_as_before(conn: asyncpg.Connection) -> dict[str, Any]:
    """Write the old invoice as the earlier LUC did, in one transaction."""
    ids = [r["id"] for r in await conn.fetch("SELECT id FROM ledger_entries ORDER BY id")]
    document = old_document(ids)
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    async with conn.transaction():
        await conn.execute(
            # Recording the events made the job's row already (migration 0015 on).
            "INSERT INTO jobs (job_id, customer, title) VALUES ('job-old', $1, $2)"
            " ON CONFLICT (job_id) DO UPDATE SET customer = $1, title = $2",
            document["customer"],
            document["title"],
        )
        await conn.execute("INSERT INTO invoice_counters (year, last_number) VALUES (2026, 1)")
        await conn.execute(
            """
            INSERT INTO invoices (number, year, seq, job_id, issued_at, currency, subtotal_usd,
                rounding_rule, rounding_usd, total_usd, covered_entries, unpriced_events,
                follow_up_of, canonical, digest)
            VALUES ('LUC-2026-000001', 2026, 1, 'job-old', $1, 'USD', 0.049405, $2, 0.000595,
                    0.05, 2, 0, NULL, $3, $4)
            """,
            ISSUED_AT,
            document["rounding_rule"],
            canonical,
            digest,
        )
        for position, line in enumerate(document["lines"], start=1):
            await conn.execute(
                """
                INSERT INTO invoice_lines (invoice_number, position, agent, model, provider,
                    catalog_version, long_context_from, tier, events, input_tokens,
                    cached_input_tokens, cache_write_tokens, output_tokens, reasoning_tokens,
                    price_input, price_output, price_cache_read, price_cache_write,
                    price_reasoning, price_per_request, amount_usd, actual_cost_usd)
                VALUES ('LUC-2026-000001', $1, $2, $3, 'openrouter', 1, NULL, $4, 1, $5, $6,
                    $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
                """,
                position,
                line["agent"],
                line["model"],
                line["tier"],
                *(line[k] for k in (*TOKENS, "reasoning_tokens")),
                *(D(line["unit_prices"][k]) for k in PRICE_CLASSES),
                D(line["amount_usd"]),
                D(line["actual_cost_usd"]),
            )
        await conn.execute(
            "INSERT INTO invoice_entries (invoice_number, ledger_entry_id)"
            " SELECT 'LUC-2026-000001', unnest($1::bigint[])",
            ids,
        )
    return {**document, "digest": digest}


@asynccontextmanager
async def luc(database_url: str, admin_key: str) -> AsyncIterator[Any]:
    app = create_app(settings_for(database_url, LUC_AUTH="on", LUC_ISSUER_NAME="AIMS Billing"))
    async with AsyncTestClient(app=app) as client:
        client.headers.update(bearer(admin_key))
        yield client


async def test_an_invoice_issued_before_is_served_presented_and_verified_as_issued(
    database_url: str, admin_key: str
) -> None:
    async with connected(database_url) as conn:
        outcome = await record_batch(
            conn,
            CatalogCache(),
            [
                usage_event(
                    "old-1",
                    job_id="job-old",
                    model=SONNET,
                    input_tokens=12_345,
                    output_tokens=678,
                    provider_cost_usd=D("0.045"),
                ),
                usage_event(
                    "old-2",
                    job_id="job-old",
                    agent="ORACLE",
                    model=FLASH,
                    input_tokens=50_000,
                    cached_input_tokens=40_000,
                    output_tokens=2_000,
                ),
            ],
        )
        assert [r.status for r in outcome.results] == ["accepted", "accepted"]
    # Alembic runs its own event loop (db/env.py): in a thread, as ``migrate`` does.
    await downgrade_before(database_url, REVISION)
    async with connected(database_url) as conn:
        assert await schema_revision(conn) == revision_before(REVISION)
        old = await issue_as_before(conn)
    await asyncio.to_thread(migrate_sync, database_url)

    async with luc(database_url, admin_key) as client:
        # Served exactly as issued: no field added, none taken away, the digest holds.
        assert (await client.get("/v1/invoices/LUC-2026-000001")).json() == old
        verified = await luc_on(database_url, "invoice", "verify", "LUC-2026-000001")
        assert verified.returncode == 0, verified.stderr
        (listed,) = (await client.get("/v1/invoices")).json()["items"]
        assert (listed["kind"], listed["customer_id"], listed["due_date"]) == (
            "invoice",
            None,
            None,
        )
        # The forms: the customer it named, the issuer it had, lines at every digit, no
        # actual cost, no credits rows (it had none). 0.049405 rounded once: 0.05 (+0.000595).
        rows = list(
            csv.DictReader(
                io.StringIO((await client.get("/v1/invoices/LUC-2026-000001?format=csv")).text)
            )
        )
        assert [(r["row_type"], r["amount_usd"]) for r in rows] == [
            ("line", "0.047205"),
            ("line", "0.0022"),
            ("subtotal", "0.049405"),
            ("rounding", "0.000595"),
            ("total", "0.05"),
        ]
        page = (await client.get("/v1/invoices/LUC-2026-000001?format=html")).text
        assert "Acme Corp, Dept. 7" in page and "LUC · LLM usage cost ledger" in page
        assert "AIMS Billing" not in page and "0.045" not in page
        # Finance's view: its lines billed the catalog cost, so that is their cost.
        internal = (await client.get("/v1/invoices/LUC-2026-000001?view=internal")).json()
        assert [(x["cost_usd"], x["actual_cost_usd"]) for x in internal["lines"]] == [
            ("0.047205", "0.045"),
            ("0.0022", "0.0022"),
        ]
        # 0.045 + 0.0022
        assert (internal["cost_usd"], internal["actual_cost_usd"]) == ("0.049405", "0.0472")

    # Back to the schema before: nothing of 0020 is left, the invoice is as it was.
    await downgrade_before(database_url, REVISION)
    async with connected(database_url) as conn:
        assert await conn.fetchval("SELECT to_regclass('invoice_logos')") is None
        columns = await conn.fetchval(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'invoices'"
            " AND column_name IN ('kind', 'corrects', 'customer_id', 'due_date')"
        )
        assert columns == 0
        assert await conn.fetchval("SELECT digest FROM invoices") == old["digest"]
    await asyncio.to_thread(migrate_sync, database_url)

    # A credit note ties the schema to 0020: the downgrade refuses rather than lose it.
    async with connected(database_url) as conn:
        await conn.execute(
            """
            INSERT INTO invoices (number, kind, year, seq, job_id, issued_at, currency,
                subtotal_usd, rounding_rule, rounding_usd, total_usd, covered_entries,
                unpriced_events, follow_up_of, corrects, canonical, digest)
            SELECT 'LUC-CN-2026-000001', 'credit_note', 2026, 1, job_id, now(), currency,
                -0.01, rounding_rule, 0, -0.01, 1, 0, number, number, '{}',
                encode(sha256(convert_to('{}', 'UTF8')), 'hex')
            FROM invoices
            """
        )
    with pytest.raises(Exception, match="credit notes have been issued"):
        await downgrade_before(database_url, REVISION)
