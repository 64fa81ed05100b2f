"""Invoices a customer can pay: who issues, who is billed, when it is due, credit notes, and
follow-ups too small to bill, with every amount worked by hand to the cent.

Prices from the AIMS catalog (version 1), USD per 1M tokens: Claude Sonnet 4.5 $3 in / $15
out, Claude Haiku 4.5 $0.80 / $4.00, Gemini 3.0 Flash $0.10 / $0.40 (cache read $0.01),
Llama 3.3 70B $0.10 / $0.10 (no cache price: cache reads at the input price).
"""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from litestar.testing import AsyncTestClient

from service.app import create_app
from tests.scenarios.test_invoices import expected_digest, year_of
from tests.support.commands import luc_on
from tests.support.events import record_accepted, wire_event
from tests.support.images import png
from tests.support.keys import bearer
from tests.support.settings import settings_for

SONNET = "anthropic/claude-sonnet-4.5"
HAIKU = "anthropic/claude-haiku-4.5"
FLASH = "google/gemini-3.0-flash"
LLAMA = "meta-llama/llama-3.3-70b-instruct"

event = partial(wire_event, occurred_at="2026-10-10T09:00:00Z", agent="ACHEEVY")


@asynccontextmanager
async def luc(database_url: str, admin_key: str, **env: str) -> AsyncIterator[Any]:
    """The LUC app on the test's database with these settings, as an admin."""
    app = create_app(settings_for(database_url, LUC_AUTH="on", **env))
    async with AsyncTestClient(app=app) as client:
        client.headers.update(bearer(admin_key))
        yield client


async def issue(client: Any, job_id: str) -> dict[str, Any]:
    response = await client.post(f"/v1/jobs/{job_id}/invoices")
    assert response.status_code == 201, response.text
    return dict(response.json())


def issue_date(invoice: dict[str, Any]) -> date:
    return (
        datetime.fromisoformat(invoice["issued_at"].replace("Z", "+00:00")).astimezone(UTC).date()
    )


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))


async def test_an_invoice_names_its_issuer_and_customer_as_they_were_at_issue(
    database_url: str, admin_key: str, tmp_path: Path
) -> None:
    logo = tmp_path / "logo.png"
    logo.write_bytes(png())
    issuer_then = {
        "LUC_ISSUER_NAME": "AIMS Billing GmbH",
        "LUC_ISSUER_ADDRESS": "Hauptstraße 1\\n10115 Berlin",  # \n as a .env file writes it
        "LUC_ISSUER_TAX_ID": "DE123456789",
        "LUC_ISSUER_PAYMENT_TERMS_DAYS": "14",
        "LUC_ISSUER_LOGO": str(logo),
        "LUC_ISSUER_FOOTER": "IBAN DE00 1234 5678 9012 3456 78 · BIC AIMSDEFF",
    }
    async with luc(database_url, admin_key, **issuer_then) as client:
        created = await client.post(
            "/v1/customers",
            json={
                "id": "acme",
                "name": "Acme Corp",
                "address": "1 Road Runner Way\nPhoenix, AZ 85001",
                "tax_id": "US-99-1234567",
            },
        )
        assert created.status_code == 201, created.text
        await record_accepted(
            client,
            [
                # Sonnet: 12,345 × 3 + 678 × 15 = 37,035 + 10,170 = 47,205 per 1M → 0.047205
                event(
                    "p1",
                    job_id="job-pay",
                    customer_id="acme",
                    model=SONNET,
                    input_tokens=12_345,
                    output_tokens=678,
                ),
                # Flash: 10,000 × 0.10 + 40,000 cached × 0.01 + 2,000 × 0.40 = 2,200 → 0.0022
                event(
                    "p2",
                    job_id="job-pay",
                    customer_id="acme",
                    agent="ORACLE",
                    model=FLASH,
                    input_tokens=50_000,
                    cached_input_tokens=40_000,
                    output_tokens=2_000,
                ),
            ],
        )
        first = await issue(client, "job-pay")
        assert first["kind"] == "invoice"
        assert first["issuer"] == {
            "name": "AIMS Billing GmbH",
            "address": "Hauptstraße 1\n10115 Berlin",
            "tax_id": "DE123456789",
            "payment_terms_days": 14,
            "footer": "IBAN DE00 1234 5678 9012 3456 78 · BIC AIMSDEFF",
            "logo": {"sha256": hashlib.sha256(png()).hexdigest(), "media_type": "image/png"},
        }
        assert first["customer"] == {
            "id": "acme",
            "name": "Acme Corp",
            "address": "1 Road Runner Way\nPhoenix, AZ 85001",
            "tax_id": "US-99-1234567",
        }
        assert first["due_date"] == (issue_date(first) + timedelta(days=14)).isoformat()
        # 0.047205 + 0.0022 = 0.049405 → 0.05; no prepaid credits yet: all of it is due.
        assert (first["subtotal_usd"], first["total_usd"]) == ("0.049405", "0.05")
        assert (first["credits_applied_usd"], first["amount_due_usd"]) == ("0.00", "0.05")
        assert first["digest"] == expected_digest(first)
        rows = csv_rows((await client.get(f"/v1/invoices/{first['number']}?format=csv")).text)
        assert {(r["invoice"], r["customer_id"], r["job_id"]) for r in rows} == {
            (first["number"], "acme", "job-pay")
        }
        verified = await luc_on(database_url, "invoice", "verify", first["number"])
        assert verified.returncode == 0, verified.stderr
        listed = (await client.get("/v1/invoices")).json()["items"]
        assert [(i["number"], i["kind"], i["customer_id"], i["due_date"]) for i in listed] == [
            (first["number"], "invoice", "acme", first["due_date"])
        ]

        moved = await client.patch("/v1/customers/acme", json={"address": "2 Mesa Drive"})
        assert moved.status_code == 200, moved.text

    # Another issuer since: the issued invoice does not change, its page neither.
    issuer_now = {"LUC_ISSUER_NAME": "AIMS Billing AG", "LUC_ISSUER_PAYMENT_TERMS_DAYS": "30"}
    async with luc(database_url, admin_key, **issuer_now) as client:
        assert (await client.get(f"/v1/invoices/{first['number']}")).json() == first
        page = (await client.get(f"/v1/invoices/{first['number']}?format=html")).text
        assert "AIMS Billing GmbH" in page and "AIMS Billing AG" not in page
        assert "data:image/png;base64," + base64.b64encode(png()).decode() in page
        assert "1 Road Runner Way" in page and "2 Mesa Drive" not in page
        assert "DE123456789" in page and "US-99-1234567" in page
        assert "IBAN DE00 1234 5678 9012 3456 78" in page
        assert "14 days net" in page and first["due_date"] in page

        # Haiku: 5,000 × 0.80 + 1,000 × 4.00 = 8,000 per 1M → 0.008 → 0.01
        await record_accepted(
            client,
            [event("p3", job_id="job-pay", model=HAIKU, input_tokens=5_000, output_tokens=1_000)],
        )
        second = await issue(client, "job-pay")
        assert second["follow_up_of"] == first["number"]
        assert (second["issuer"]["name"], second["issuer"]["logo"]) == ("AIMS Billing AG", None)
        assert second["customer"]["address"] == "2 Mesa Drive"
        assert second["due_date"] == (issue_date(second) + timedelta(days=30)).isoformat()
        assert (second["total_usd"], second["amount_due_usd"]) == ("0.01", "0.01")
        page = (await client.get(f"/v1/invoices/{second['number']}?format=html")).text
        assert "<img" not in page and "30 days net" in page


# The correction of the scenarios below: Llama's cache reads cost $0.01 (not the input
# price), from before the events.
LLAMA_CORRECTION = {
    "effective_from": "2026-09-01T00:00:00Z",
    "parent": 1,
    "models": [
        {
            "id": LLAMA,
            "name": "Llama 3.3 70B",
            "tier": "economy",
            "input": "0.10",
            "output": "0.10",
            "cache_read": "0.01",
        }
    ],
}


def llama_call(event_id: str, job_id: str) -> dict[str, Any]:
    """v1: (100,000 + 900,000 cached) × 0.10 + 20,000 × 0.10 = 102,000 per 1M → 0.102.
    Corrected: 100,000 × 0.10 + 900,000 × 0.01 + 20,000 × 0.10 = 21,000 → 0.021."""
    return event(
        event_id,
        job_id=job_id,
        model=LLAMA,
        input_tokens=1_000_000,
        cached_input_tokens=900_000,
        output_tokens=20_000,
    )


async def correct_llama(client: Any) -> int:
    created = await client.post("/v1/catalog/versions", json=LLAMA_CORRECTION)
    assert created.status_code == 201, created.text
    rerated = await client.post(
        "/v1/catalog/rerate", json={"since": "2026-09-01T00:00:00Z", "dry_run": False}
    )
    assert rerated.status_code == 200, rerated.text
    return int(created.json()["id"])


async def test_a_negative_follow_up_is_a_credit_note_numbered_apart_naming_what_it_corrects(
    client: Any, db: asyncpg.Connection, database_url: str
) -> None:
    await record_accepted(client, [llama_call("n1", "job-cn")])
    first = await issue(client, "job-cn")
    # 0.102 → 0.10
    assert (first["kind"], first["total_usd"]) == ("invoice", "0.10")
    year = year_of(first)
    # Flash: 100,000 × 0.10 = 10,000 per 1M → 0.01
    await record_accepted(
        client, [event("n2", job_id="job-cn", model=FLASH, input_tokens=100_000, output_tokens=0)]
    )
    second = await issue(client, "job-cn")
    assert (second["number"], second["kind"], second["total_usd"]) == (
        f"LUC-{year}-000002",
        "invoice",
        "0.01",
    )

    v2 = await correct_llama(client)
    preview = (await client.get("/v1/jobs/job-cn/invoice")).json()
    assert (preview["kind"], preview["issuable"], preview["total_usd"]) == (
        "credit_note",
        True,
        "-0.08",
    )
    # The preview is what issuing issues: the invoice it corrects too (it said null).
    assert preview["corrects"] == first["number"]
    credit = await issue(client, "job-cn")
    assert credit["number"] == f"LUC-CN-{year}-000001"
    assert credit["kind"] == "credit_note"
    # It follows the job's last invoice, and corrects the one that billed the re-rated call.
    assert (credit["follow_up_of"], credit["corrects"]) == (second["number"], first["number"])
    assert [(x["catalog_version"], x["events"], x["amount_usd"]) for x in credit["lines"]] == [
        (1, -1, "-0.102"),  # the reversal of what the first invoice billed
        (v2, 1, "0.021"),  # the call at the corrected price
    ]
    # −0.102 + 0.021 = −0.081 → −0.08 (half up, away from zero); owed to the customer
    assert (credit["subtotal_usd"], credit["rounding_usd"], credit["total_usd"]) == (
        "-0.081",
        "0.001",
        "-0.08",
    )
    assert (credit["credits_applied_usd"], credit["amount_due_usd"]) == ("0.00", "-0.08")
    assert credit["digest"] == expected_digest(credit)
    assert any(f"corrects invoice {first['number']}" in n for n in credit["notes"])
    assert (await client.get(f"/v1/invoices/{credit['number']}")).json() == credit
    row = await db.fetchrow(
        "SELECT kind, year, seq, corrects FROM invoices WHERE number = $1", credit["number"]
    )
    assert row is not None
    assert tuple(row) == ("credit_note", year, 1, first["number"])
    # Its stored text, digest, columns (kind, corrects, due date too) and entries agree.
    verified = await luc_on(database_url, "invoice", "verify", credit["number"])
    assert verified.returncode == 0, verified.stderr

    rows = csv_rows((await client.get(f"/v1/invoices/{credit['number']}?format=csv")).text)
    assert {r["kind"] for r in rows} == {"credit_note"}
    shown = {r["row_type"]: r["amount_usd"] for r in rows if r["row_type"] != "line"}
    # −0.102 + 0.021 = −0.081, rounded once (half away from zero) to −0.08: +0.001
    assert [r["amount_usd"] for r in rows if r["row_type"] == "line"] == ["-0.102", "0.021"]
    assert shown == {
        "subtotal": "-0.081",
        "rounding": "0.001",
        "total": "-0.08",
        "credits": "0.00",
        "amount_due": "-0.08",
    }
    page = (await client.get(f"/v1/invoices/{credit['number']}?format=html")).text
    assert "<title>Credit note LUC-CN-" in page and "<h1>Credit note</h1>" in page
    assert "<dt>Corrects invoice</dt>" in page and first["number"] in page
    assert "Invoice</h1>" not in page

    # The invoices' own series goes on where it was: credit notes take none of its numbers.
    await record_accepted(
        client,
        [event("n3", job_id="job-other", model=FLASH, input_tokens=100_000, output_tokens=0)],
    )
    assert (await issue(client, "job-other"))["number"] == f"LUC-{year}-000003"
    counters = await db.fetch(
        "SELECT series, last_number FROM invoice_counters WHERE year = $1 ORDER BY series", year
    )
    assert [tuple(r) for r in counters] == [("credit_note", 1), ("invoice", 3)]
    # The database refuses a credit note that is not negative, and an invoice that is.
    assert (
        await db.fetchval(
            "SELECT count(*) FROM invoices WHERE (kind = 'credit_note') <> (total_usd < 0)"
        )
        == 0
    )


async def test_a_follow_up_under_a_cent_takes_no_number_and_is_billed_on_the_next_one(
    client: Any, db: asyncpg.Connection
) -> None:
    # Sonnet: 10,000 × 3 + 1,000 × 15 = 45,000 per 1M → 0.045
    await record_accepted(
        client,
        [event("z1", job_id="job-z", model=SONNET, input_tokens=10_000, output_tokens=1_000)],
    )
    first = await issue(client, "job-z")
    assert first["total_usd"] == "0.05"
    year = year_of(first)
    # Sonnet: 400 × 3 = 1,200 per 1M → 0.0012, which is 0.00 at the cent
    await record_accepted(
        client, [event("z2", job_id="job-z", model=SONNET, input_tokens=400, output_tokens=0)]
    )
    preview = (await client.get("/v1/jobs/job-z/invoice")).json()
    assert (preview["subtotal_usd"], preview["total_usd"], preview["issuable"]) == (
        "0.0012",
        "0.00",
        False,
    )
    reason = (
        f"not issued: the new usage of job 'job-z' since {first['number']} comes to 0.0012 "
        "USD, which is 0.00 at the cent, so no invoice or credit note is issued and no number "
        "is spent; its 1 ledger entry stays unbilled and carries forward to the job's next "
        "follow-up"
    )
    assert preview["not_issued_because"] == reason
    refused = await client.post("/v1/jobs/job-z/invoices")
    assert refused.status_code == 409
    assert refused.json()["detail"] == reason
    # No number spent, nothing covered.
    assert await db.fetchval("SELECT count(*) FROM invoices") == 1
    assert (
        await db.fetchval(
            "SELECT last_number FROM invoice_counters WHERE series = 'invoice' AND year = $1", year
        )
        == 1
    )
    assert await db.fetchval("SELECT count(*) FROM invoice_entries") == 1

    # Sonnet: 2,000 × 3 + 300 × 15 = 6,000 + 4,500 = 10,500 per 1M → 0.0105
    await record_accepted(
        client,
        [
            event(
                "z3",
                job_id="job-z",
                model=SONNET,
                occurred_at="2026-10-11T09:00:00Z",
                input_tokens=2_000,
                output_tokens=300,
            )
        ],
    )
    second = await issue(client, "job-z")
    assert second["number"] == f"LUC-{year}-000002"
    assert second["follow_up_of"] == first["number"]
    # The carried-forward 0.0012 and the new 0.0105: 0.0117 → 0.01
    assert second["covered_entries"] == 2
    assert [(x["events"], x["input_tokens"], x["amount_usd"]) for x in second["lines"]] == [
        (2, 2_400, "0.0117")
    ]
    assert (second["subtotal_usd"], second["rounding_usd"], second["total_usd"]) == (
        "0.0117",
        "-0.0017",
        "0.01",
    )
    assert second["amount_due_usd"] == "0.01"
    covered = await db.fetch(
        "SELECT l.event_id FROM invoice_entries i JOIN ledger_entries l ON l.id = i.ledger_entry_id"
        " WHERE i.invoice_number = $1 ORDER BY l.event_id",
        second["number"],
    )
    assert [r["event_id"] for r in covered] == ["z2", "z3"]


async def test_a_credit_under_a_cent_is_carried_forward_too(client: Any) -> None:
    # Llama: (10,000 + 40,000 cached) × 0.10 = 5,000 per 1M → 0.005 under v1; corrected
    # 10,000 × 0.10 + 40,000 × 0.01 = 1,400 → 0.0014: a change of −0.0036, 0.00 at the cent.
    await record_accepted(
        client,
        [
            event(
                "s1",
                job_id="job-s",
                model=LLAMA,
                input_tokens=50_000,
                cached_input_tokens=40_000,
                output_tokens=0,
            ),
            # Sonnet: 10,000 × 3 = 30,000 per 1M → 0.03
            event("s2", job_id="job-s", model=SONNET, input_tokens=10_000, output_tokens=0),
        ],
    )
    first = await issue(client, "job-s")
    # 0.005 + 0.03 = 0.035 → 0.04
    assert (first["subtotal_usd"], first["total_usd"]) == ("0.035", "0.04")
    await correct_llama(client)
    refused = await client.post("/v1/jobs/job-s/invoices")
    assert refused.status_code == 409
    assert "comes to -0.0036 USD, which is 0.00 at the cent" in refused.json()["detail"]


async def test_invoices_and_credit_notes_issued_at_once_take_gap_free_numbers_in_their_series(
    server_factory: Any, db: asyncpg.Connection
) -> None:
    server = server_factory()
    credit_jobs = [f"job-k{i}" for i in range(3)]
    invoice_jobs = [f"job-i{i}" for i in range(3)]
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        await record_accepted(http, [llama_call(f"k{i}", j) for i, j in enumerate(credit_jobs)])
        firsts = [await issue(http, j) for j in credit_jobs]
        year = year_of(firsts[0])
        assert [i["number"] for i in firsts] == [f"LUC-{year}-{n:06d}" for n in (1, 2, 3)]
        await correct_llama(http)  # each credit job's follow-up: −0.081 → −0.08
        # Flash: 100,000 × 0.10 = 0.01 each
        await record_accepted(
            http,
            [
                event(f"i{i}", job_id=j, model=FLASH, input_tokens=100_000, output_tokens=0)
                for i, j in enumerate(invoice_jobs)
            ],
        )
        # Six issues at once, one job twice (its second finds nothing new). The counters
        # are held until every request waits, so they meet there together.
        jobs = [*credit_jobs, *invoice_jobs, credit_jobs[0]]
        async with db.transaction():
            await db.execute("LOCK TABLE invoice_counters IN EXCLUSIVE MODE")
            requests = [asyncio.create_task(http.post(f"/v1/jobs/{j}/invoices")) for j in jobs]
            waiting = 0
            for _ in range(400):
                await db.execute("SELECT pg_stat_clear_snapshot()")
                waiting = await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if waiting == len(jobs):
                    break
                await asyncio.sleep(0.05)
        responses = await asyncio.gather(*requests)
        assert waiting == len(jobs)
        assert sorted(r.status_code for r in responses) == [201] * 6 + [409]
        issued = [r.json() for r in responses if r.status_code == 201]
    by_kind = {
        kind: sorted(
            (i["number"], i["job_id"], i["total_usd"]) for i in issued if i["kind"] == kind
        )
        for kind in ("invoice", "credit_note")
    }
    assert [n for n, _, _ in by_kind["credit_note"]] == [
        f"LUC-CN-{year}-{n:06d}" for n in (1, 2, 3)
    ]
    assert {(j, t) for _, j, t in by_kind["credit_note"]} == {(j, "-0.08") for j in credit_jobs}
    assert [n for n, _, _ in by_kind["invoice"]] == [f"LUC-{year}-{n:06d}" for n in (4, 5, 6)]
    assert {(j, t) for _, j, t in by_kind["invoice"]} == {(j, "0.01") for j in invoice_jobs}
    rows = await db.fetch("SELECT kind, seq FROM invoices ORDER BY kind, seq")
    assert [tuple(r) for r in rows] == [
        ("credit_note", 1),
        ("credit_note", 2),
        ("credit_note", 3),
        *(("invoice", n) for n in range(1, 7)),
    ]


async def test_luc_invoice_issues_a_credit_note_shows_it_to_finance_and_refuses_a_zero_follow_up(
    client: Any, database_url: str
) -> None:
    await record_accepted(client, [llama_call("c1", "job-cli")])
    first = await issue(client, "job-cli")
    await correct_llama(client)
    issued = await luc_on(
        database_url, "invoice", "issue", "job-cli", LUC_ISSUER_NAME="AIMS Billing GmbH"
    )
    assert issued.returncode == 0, issued.stderr
    credit = json.loads(issued.stdout)
    assert (credit["kind"], credit["total_usd"], credit["corrects"]) == (
        "credit_note",
        "-0.08",
        first["number"],
    )
    assert credit["issuer"]["name"] == "AIMS Billing GmbH"
    assert f"issued credit note {credit['number']} for job job-cli" in issued.stderr
    shown = await luc_on(database_url, "invoice", "show", credit["number"], "--internal")
    assert shown.returncode == 0, shown.stderr
    internal = json.loads(shown.stdout)
    # the reversal of 0.102 and the re-booking at 0.021, at catalog cost
    assert [x["cost_usd"] for x in internal["lines"]] == ["-0.102", "0.021"]
    assert (internal["view"], internal["cost_usd"]) == ("internal", "-0.081")
    refused = await luc_on(
        database_url, "invoice", "show", credit["number"], "--internal", "--format", "csv"
    )
    assert refused.returncode == 2 and "--internal is JSON only" in refused.stderr

    # Sonnet: 400 × 3 = 0.0012: not issued, exit 1 with the reason
    await record_accepted(
        client, [event("c2", job_id="job-cli", model=SONNET, input_tokens=400, output_tokens=0)]
    )
    zero = await luc_on(database_url, "invoice", "issue", "job-cli")
    assert zero.returncode == 1
    assert "which is 0.00 at the cent" in zero.stderr and "carries forward" in zero.stderr


async def test_a_job_moved_to_another_customer_credits_the_former_and_bills_the_new_one(
    client: Any,
) -> None:
    # Acme has no plan (price = catalog cost); Globex's plan marks the catalog up by 50 %.
    plan = {
        "id": "markup50",
        "name": "Markup 50",
        "effective_from": "2026-01-01T00:00:00Z",
        "basis": "catalog",
        "markup": "0.5",
    }
    assert (await client.post("/v1/plans", json=plan)).status_code == 201
    for body in (
        {"id": "acme", "name": "Acme Corp"},
        {"id": "globex", "name": "Globex", "plan_id": "markup50"},
    ):
        assert (await client.post("/v1/customers", json=body)).status_code == 201
    # Haiku: 1,000,000 × 0.80 = 0.80 at the catalog; 1.20 at Globex's price.
    haiku = partial(event, model=HAIKU, input_tokens=1_000_000, output_tokens=0)
    await record_accepted(client, [haiku("mv1", job_id="job-mv", customer_id="acme")])
    first = await issue(client, "job-mv")
    assert (first["customer"]["id"], first["total_usd"]) == ("acme", "0.80")

    moved = await client.patch("/v1/jobs/job-mv", json={"customer_id": "globex"})
    assert moved.status_code == 200, moved.text
    # The move re-priced the call: −0.80 for Acme, +1.20 for Globex. Netted on one invoice
    # to Globex, Globex was billed 0.40 for a 1.20 call and Acme never got its 0.80 back.
    preview = (await client.get("/v1/jobs/job-mv/invoice")).json()
    assert (preview["customer"]["id"], preview["total_usd"]) == ("acme", "-0.80")
    credit = await issue(client, "job-mv")
    assert (credit["kind"], credit["customer"]["id"]) == ("credit_note", "acme")
    assert (credit["total_usd"], credit["corrects"]) == ("-0.80", first["number"])
    assert [(x["events"], x["amount_usd"]) for x in credit["lines"]] == [(-1, "-0.8")]
    billed = await issue(client, "job-mv")
    assert (billed["kind"], billed["customer"]["id"]) == ("invoice", "globex")
    assert (billed["total_usd"], billed["amount_due_usd"]) == ("1.20", "1.20")
    assert [(x["events"], x["amount_usd"]) for x in billed["lines"]] == [(1, "1.2")]
    nothing = await client.post("/v1/jobs/job-mv/invoices")
    assert nothing.status_code == 409, nothing.text

    # Never invoiced to Acme: its charge and reversal net to nothing, so the job's one
    # invoice is Globex's alone, with no empty document for Acme.
    await record_accepted(client, [haiku("mv2", job_id="job-mv2", customer_id="acme")])
    assert (await client.patch("/v1/jobs/job-mv2", json={"customer_id": "globex"})).is_success
    only = await issue(client, "job-mv2")
    assert (only["kind"], only["customer"]["id"]) == ("invoice", "globex")
    assert only["total_usd"] == "1.20"
    assert only["covered_entries"] == 3
    assert (await client.post("/v1/jobs/job-mv2/invoices")).status_code == 409


async def test_usage_billed_before_the_job_had_a_customer_is_credited_to_who_paid_it(
    client: Any,
) -> None:
    # Globex holds 5.00 of prepaid credits. Haiku: 1,000,000 × 0.80 = 0.80 at the catalog.
    customer = {"id": "globex", "name": "Globex"}
    assert (await client.post("/v1/customers", json=customer)).status_code == 201
    grant = await client.post("/v1/customers/globex/credits", json={"amount_usd": "5"})
    assert grant.status_code == 201, grant.text
    haiku = partial(event, model=HAIKU, input_tokens=1_000_000, output_tokens=0)
    await record_accepted(client, [haiku("nc1", job_id="job-nc")])
    # No registered customer yet: the free-text one the job names is billed, and pays.
    named = await client.patch("/v1/jobs/job-nc", json={"customer": "Some Other Ltd"})
    assert named.status_code == 200, named.text
    first = await issue(client, "job-nc")
    assert (first["customer"]["name"], first["total_usd"]) == ("Some Other Ltd", "0.80")

    moved = await client.patch("/v1/jobs/job-nc", json={"customer_id": "globex"})
    assert moved.status_code == 200, moved.text
    # The move re-booked the call for Globex, drawing 0.80 of its credits. Netted on one
    # document to Globex (the reversal of what Some Other Ltd paid against Globex's
    # re-booking), Globex was billed nothing and handed its 0.80 of credits back as money,
    # and Some Other Ltd never got its 0.80 back.
    credit = await issue(client, "job-nc")
    assert (credit["kind"], credit["customer"]) == (
        "credit_note",
        {"id": None, "name": "Some Other Ltd", "address": None, "tax_id": None},
    )
    assert (credit["total_usd"], credit["corrects"]) == ("-0.80", first["number"])
    assert (credit["credits_applied_usd"], credit["amount_due_usd"]) == ("0.00", "-0.80")
    assert [(x["events"], x["amount_usd"]) for x in credit["lines"]] == [(-1, "-0.8")]
    billed = await issue(client, "job-nc")
    assert (billed["kind"], billed["customer"]["id"]) == ("invoice", "globex")
    assert (billed["total_usd"], billed["credits_applied_usd"]) == ("0.80", "0.80")
    assert billed["amount_due_usd"] == "0.00"
    assert [(x["events"], x["amount_usd"]) for x in billed["lines"]] == [(1, "0.8")]
    assert (await client.post("/v1/jobs/job-nc/invoices")).status_code == 409
    balance = (await client.get("/v1/customers/globex/credits")).json()["balance_usd"]
    assert balance == "4.2"


async def test_a_monthly_customer_is_not_billed_the_reversal_of_what_another_paid(
    client: Any,
) -> None:
    customer = {"id": "initech", "name": "Initech", "invoicing": "monthly"}
    assert (await client.post("/v1/customers", json=customer)).status_code == 201
    haiku = partial(event, model=HAIKU, input_tokens=1_000_000, output_tokens=0)
    call = haiku("nm1", job_id="job-nm")
    await record_accepted(client, [call])
    first = await issue(client, "job-nm")  # to nobody: the job has no customer yet
    assert (first["customer"], first["total_usd"]) == (None, "0.80")
    assert (await client.patch("/v1/jobs/job-nm", json={"customer_id": "initech"})).is_success
    month = call["occurred_at"][:7]
    # Initech's month bills its re-booking of the call, not 0.00 (the re-booking netted
    # against the reversal of what the job's first invoice billed).
    monthly = await client.post("/v1/customers/initech/invoices", json={"month": month})
    assert monthly.status_code == 201, monthly.text
    assert (monthly.json()["total_usd"], monthly.json()["covered_entries"]) == ("0.80", 1)
    # The reversal is credited on the job's own document, to whoever paid it, correcting
    # the invoice it paid (not Initech's month, which billed the same call to Initech).
    credit = await issue(client, "job-nm")
    assert (credit["kind"], credit["customer"], credit["total_usd"]) == (
        "credit_note",
        None,
        "-0.80",
    )
    assert credit["corrects"] == first["number"]
    assert (await client.post("/v1/jobs/job-nm/invoices")).status_code == 409


async def test_each_party_billed_before_the_job_had_a_customer_is_credited_what_it_paid(
    client: Any,
) -> None:
    assert (await client.post("/v1/customers", json={"id": "umbrella", "name": "U"})).is_success
    haiku = partial(event, model=HAIKU, input_tokens=1_000_000, output_tokens=0)
    billed = []
    for n, name in ((1, "Acme Ltd"), (2, "Beta Ltd")):
        await record_accepted(client, [haiku(f"mp{n}", job_id="job-mp")])
        assert (await client.patch("/v1/jobs/job-mp", json={"customer": name})).is_success
        billed.append(await issue(client, "job-mp"))
    assert [(b["customer"]["name"], b["total_usd"]) for b in billed] == [
        ("Acme Ltd", "0.80"),
        ("Beta Ltd", "0.80"),
    ]
    assert (await client.patch("/v1/jobs/job-mp", json={"customer_id": "umbrella"})).is_success
    # Beta was credited both calls (1.60) though it paid one, and Acme nothing.
    credits = [await issue(client, "job-mp") for _ in billed]
    assert [(c["kind"], c["customer"]["name"], c["total_usd"], c["corrects"]) for c in credits] == [
        ("credit_note", "Acme Ltd", "-0.80", billed[0]["number"]),
        ("credit_note", "Beta Ltd", "-0.80", billed[1]["number"]),
    ]
    last = await issue(client, "job-mp")
    assert (last["kind"], last["customer"]["id"], last["total_usd"]) == (
        "invoice",
        "umbrella",
        "1.60",
    )
    assert (await client.post("/v1/jobs/job-mp/invoices")).status_code == 409
