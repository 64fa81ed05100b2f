"""A ledger seeded with the AIMS catalog before its cache and long-context prices gets the
completed one at start-up, once (SPEC §3, ``recording.catalog_upgrade``).

The database is made as LUC left it before: migrated, version 1 the previous AIMS file
(``aims-v1-previous.json``: base prices only, cached tokens priced as input), events priced
on it and one job invoiced. Then LUC starts, twice, and two processes start together.

Prices per 1M tokens, old v1 → completed (same effective_from, 2025-01-01):
Claude Sonnet 4.5 3 / 15 → cache read 0.30; GPT-5.1 3 / 12 → cache read 0.30; Claude Haiku
4.5 0.80 / 4 → cache read 0.08, cache write 1.00; Gemini 3 Pro 1.25 / 10 → from 200,001
input tokens 2.50 / 15, cache read 0.25; Gemini 3.0 Flash and Llama 3.3 70B unchanged for
calls without cached tokens (Llama has no cache price at all).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from service.app import create_app
from service.catalog.service import (
    PREVIOUS_AIMS_CATALOG_FILE,
    CatalogCache,
    aims_catalog,
    create_version,
)
from service.db.migrations import migrate_sync
from service.invoices.service import issue_invoice
from service.recording.catalog_upgrade import COMPLETED_LABEL, upgrade_aims_catalog
from service.recording.service import record_batch
from service.settings import IssuerSettings
from tests.support.commands import luc_on
from tests.support.databases import connected, new_database
from tests.support.events import usage_event
from tests.support.ledger_truth import assert_rollups_equal_ledger
from tests.support.settings import settings_for

D = Decimal
SONNET = "anthropic/claude-sonnet-4.5"
GPT = "openai/gpt-5.1"
LLAMA = "meta-llama/llama-3.3-70b-instruct"
FLASH = "google/gemini-3.0-flash"
PRO = "google/gemini-3-pro-preview"
HAIKU = "anthropic/claude-haiku-4.5"

# (id, job, agent, model, input, cached, cache write, output, old cost, completed cost)
EVENTS = [
    # The README's example: old 2,150×3 + 4×15 = 6,510 → 0.00651;
    # completed 102×3 + 2,048×0.30 + 4×15 = 306 + 614.4 + 60 = 980.4 → 0.0009804
    ("e1", "job-a", "ACHEEVY", SONNET, 2_150, 2_048, 0, 4, "0.00651", "0.0009804"),
    # old 10,000×3 + 500×12 = 36,000 → 0.036;
    # completed 4,000×3 + 6,000×0.30 + 500×12 = 12,000 + 1,800 + 6,000 = 19,800 → 0.0198
    ("e2", "job-a", "ORACLE", GPT, 10_000, 6_000, 0, 500, "0.036", "0.0198"),
    # no cache price: 5,000×0.10 + 1,000×0.10 = 600 → 0.0006 either way (not re-rated)
    ("e3", "job-a", "ORACLE", LLAMA, 5_000, 1_000, 0, 1_000, "0.0006", "0.0006"),
    # no cached tokens: 1,000×0.10 + 500×0.40 = 300 → 0.0003 either way (not re-rated)
    ("e4", "job-b", "ACHEEVY", FLASH, 1_000, 0, 0, 500, "0.0003", "0.0003"),
    # old 300,000×1.25 + 2,000×10 = 395,000 → 0.395; completed, every token at the long
    # rate: 200,000×2.50 + 100,000×0.25 + 2,000×15 = 500,000 + 25,000 + 30,000 → 0.555
    ("e5", "job-b", "ByteRover", PRO, 300_000, 100_000, 0, 2_000, "0.395", "0.555"),
    # old 20,000×0.80 + 1,000×4 = 20,000 → 0.02; completed 5,000×0.80 + 10,000×0.08
    # + 5,000×1.00 + 1,000×4 = 4,000 + 800 + 5,000 + 4,000 = 13,800 → 0.0138
    ("e6", "job-b", "ByteRover", HAIKU, 20_000, 10_000, 5_000, 1_000, "0.02", "0.0138"),
]
CHANGED = [e for e in EVENTS if e[8] != e[9]]
# −0.0055296 − 0.0162 + 0.16 − 0.0062
TOTAL_DELTA = D("0.1320704")


def events() -> list[Any]:
    return [
        usage_event(
            event_id,
            job_id=job,
            agent=agent,
            model=model,
            input_tokens=inp,
            cached_input_tokens=cached,
            cache_write_tokens=written,
            output_tokens=out,
        )
        for event_id, job, agent, model, inp, cached, written, out, _, _ in EVENTS
    ] + [usage_event("u1", job_id="job-b", model="mistralai/unknown-x")]


@pytest.fixture
async def old_ledger(admin_url: str) -> AsyncIterator[str]:
    """A database as LUC left it before the completed catalog: the previous version 1,
    every event priced on it, job-a invoiced."""
    async with new_database(admin_url, "luc_upgrade") as url:
        await asyncio.to_thread(migrate_sync, url)
        async with connected(url) as conn:
            async with conn.transaction():
                assert await create_version(conn, aims_catalog(PREVIOUS_AIMS_CATALOG_FILE)) == 1
            outcome = await record_batch(conn, CatalogCache(), events())
            assert [r.status for r in outcome.results] == ["accepted"] * 7
            costs = {
                event_id: cost
                for event_id, cost in await conn.fetch(
                    "SELECT event_id, cost_usd FROM ledger_entries ORDER BY id"
                )
            }
            assert costs == {e[0]: D(e[8]) for e in EVENTS} | {"u1": None}
            await issue_invoice(conn, "job-a", IssuerSettings())
        yield url


async def start(url: str) -> dict[str, Any]:
    """Start LUC on ``url`` as ``luc serve`` does (migrations, seeding, the upgrade) and read
    what finance would: the catalog versions, the newest one, both jobs, the first invoice
    and job-a's next one; then stop."""
    async with connected(url) as conn:
        number = await conn.fetchval("SELECT min(number) FROM invoices")
    async with AsyncTestClient(app=create_app(settings_for(url))) as client:

        async def get(path: str) -> Any:
            response = await client.get(path)
            assert response.status_code == 200, response.text
            return response.json()

        versions = (await get("/v1/catalog/versions"))["items"]
        return {
            "versions": versions,
            "newest": await get(f"/v1/catalog/versions/{versions[-1]['id']}"),
            "jobs": {j: await get(f"/v1/jobs/{j}") for j in ("job-a", "job-b")},
            "invoice": await get(f"/v1/invoices/{number}"),
            "next_invoice": await get("/v1/jobs/job-a/invoice"),
        }


async def ledger_rows(url: str) -> list[asyncpg.Record]:
    async with connected(url) as conn:
        return list(
            await conn.fetch(
                "SELECT id, event_id, kind, catalog_version, long_context_from, cost_usd, reason "
                "FROM ledger_entries ORDER BY id"
            )
        )


async def test_start_up_adds_the_completed_catalog_once_and_re_rates_its_events_once(
    old_ledger: str,
) -> None:
    async with connected(old_ledger) as conn:
        invoice_before = await conn.fetchval("SELECT canonical FROM invoices")

    first = await start(old_ledger)

    assert [(v["id"], v["label"], v["effective_from"], v["parent"]) for v in first["versions"]] == [
        (1, "aims-v1", "2025-01-01T00:00:00Z", None),
        (2, COMPLETED_LABEL, "2025-01-01T00:00:00Z", 1),
    ]
    models = {m["id"]: m for m in first["newest"]["models"]}
    assert (models[SONNET]["cache_read"], models[SONNET]["cache_write"]) == ("0.3", "3.75")
    assert [lc["min_input_tokens"] for lc in models[SONNET]["long_context"]] == [200_001]

    rows = await ledger_rows(old_ledger)
    # 7 charges, then a reversal and a re-booking per changed event, nothing else.
    assert len(rows) == 7 + 2 * len(CHANGED)
    adjustments = [r for r in rows if r["kind"] == "adjustment"]
    for event_id, *_, old, new in EVENTS:
        mine = [
            (r["catalog_version"], r["long_context_from"], r["cost_usd"])
            for r in adjustments
            if r["event_id"] == event_id
        ]
        if old == new:
            assert mine == [], event_id
        else:
            rate = 200_001 if event_id == "e5" else None
            assert mine == [(1, None, -D(old)), (2, rate, D(new))], event_id
    assert all("completes version 1" in r["reason"] for r in adjustments)

    # job-a: 0.0009804 + 0.0198 + 0.0006; job-b: 0.0003 + 0.555 + 0.0138, and u1 unpriced
    assert first["jobs"]["job-a"]["cost_usd"] == "0.0213804"
    assert first["jobs"]["job-b"]["cost_usd"] == "0.5691"
    assert first["jobs"]["job-b"]["unpriced_events"] == 1
    pro = [line for line in first["jobs"]["job-b"]["lines"] if line["model"] == PRO]
    assert [
        (x["catalog_version"], x["long_context_from"], x["rate"], x["cost_usd"], x["events"])
        for x in pro
    ] == [(2, 200_001, "long context ≥ 200,001 input tokens", "0.555", 1)]
    assert pro[0]["unit_prices"] == {
        "input": "2.5",
        "output": "15",
        "cache_read": "0.25",
        "cache_write": "2.5",
        "reasoning": "15",
        "per_request": "0",
    }

    # The invoice issued before is untouched (0.00651 + 0.036 + 0.0006); the job's follow-up
    # carries the difference: e1 −0.00651 + 0.0009804, e2 −0.036 + 0.0198 = −0.0217296.
    async with connected(old_ledger) as conn:
        assert await conn.fetchval("SELECT canonical FROM invoices") == invoice_before
    assert first["invoice"]["subtotal_usd"] == "0.04311"
    follow_up = first["next_invoice"]
    assert follow_up["follow_up_of"] == first["invoice"]["number"]
    assert follow_up["subtotal_usd"] == "-0.0217296"
    assert [(x["model"], x["catalog_version"], x["amount_usd"]) for x in follow_up["lines"]] == [
        (SONNET, 1, "-0.00651"),
        (SONNET, 2, "0.0009804"),
        (GPT, 1, "-0.036"),
        (GPT, 2, "0.0198"),
    ]

    # Started again: nothing more.
    second = await start(old_ledger)
    assert second == first
    assert await ledger_rows(old_ledger) == rows
    async with connected(old_ledger) as conn:
        await assert_rollups_equal_ledger(conn)
        delta = await conn.fetchval(
            "SELECT sum(cost_usd) FROM ledger_entries WHERE kind = 'adjustment'"
        )
    assert delta == TOTAL_DELTA


async def test_two_processes_starting_together_upgrade_once(old_ledger: str) -> None:
    async with connected(old_ledger) as one, connected(old_ledger) as two:
        results = await asyncio.gather(upgrade_aims_catalog(one), upgrade_aims_catalog(two))
    done = [r for r in results if r is not None]
    assert len(done) == 1
    assert (done[0].version_id, done[0].replaced_version_id) == (2, 1)
    summary = done[0].summary
    assert (summary.events_examined, summary.events_changed, summary.entries_appended) == (
        6,
        4,
        8,
    )
    assert summary.delta_usd == TOTAL_DELTA
    assert {job: (d.events, d.delta_usd) for job, d in summary.jobs.items()} == {
        # e1 + e2; e5 + e6
        "job-a": (2, D("-0.0217296")),
        "job-b": (2, D("0.1538")),
    }
    async with connected(old_ledger) as conn:
        assert await conn.fetchval("SELECT count(*) FROM catalog_versions") == 2
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 7 + 8


async def test_luc_migrate_upgrades_and_says_so_once(old_ledger: str) -> None:
    done = await luc_on(old_ledger, "migrate")
    assert done.returncode == 0, done.stderr
    assert (
        "AIMS catalog completed with cache and long-context prices: version 2 (beside "
        "version 1); 4 events re-rated by 8 adjustment entries, 0.1320704 USD in all"
    ) in done.stdout
    again = await luc_on(old_ledger, "migrate")
    assert again.returncode == 0, again.stderr
    assert "completed" not in again.stdout


async def test_a_ledger_seeded_with_the_completed_catalog_or_a_catalog_of_its_own_is_left_alone(
    db: asyncpg.Connection, admin_url: str
) -> None:
    # Every test database is seeded with the completed catalog (as a new ledger is).
    assert await upgrade_aims_catalog(db) is None
    assert await db.fetchval("SELECT count(*) FROM catalog_versions") == 1
    # A ledger whose version 1 is some other catalog is not ours to correct.
    async with new_database(admin_url, "luc_own") as url:
        await asyncio.to_thread(migrate_sync, url)
        async with connected(url) as conn:
            own = aims_catalog(PREVIOUS_AIMS_CATALOG_FILE)
            own.models[0] = dataclasses.replace(own.models[0], input=D("4"))
            async with conn.transaction():
                await create_version(conn, own)
            assert await upgrade_aims_catalog(conn) is None
            assert await conn.fetchval("SELECT count(*) FROM catalog_versions") == 1
