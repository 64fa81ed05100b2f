"""Invoices finance can send and an auditor can check, with every figure worked by hand.

Prices come from the AIMS catalog (version 1), USD per 1M tokens: Claude Sonnet 4.5 $3 in /
$15 out (cache read $0.30, cache write $3.75), Claude Haiku 4.5 $0.80 / $4.00 (cache read
$0.08), Gemini 3.0 Flash $0.10 / $0.40 (cache read $0.01), Llama 3.3 70B $0.10 / $0.10 (no
cache prices: they default to input); reasoning is priced as output.

The rounding rule under test: lines and subtotal at full precision; the total is the
subtotal rounded once to cents, half up (0.125 → 0.13, where half-even would give 0.12).
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
from datetime import UTC, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.support.commands import luc_on
from tests.support.events import record_accepted, wire_event
from tests.support.ledger_truth import TOKEN_FIELDS
from tests.support.ports import free_port

SONNET = "anthropic/claude-sonnet-4.5"
HAIKU = "anthropic/claude-haiku-4.5"
FLASH = "google/gemini-3.0-flash"
LLAMA = "meta-llama/llama-3.3-70b-instruct"


event = partial(wire_event, occurred_at="2026-10-10T09:00:00Z")


async def issue(client: Any, job_id: str) -> dict[str, Any]:
    response = await client.post(f"/v1/jobs/{job_id}/invoices")
    assert response.status_code == 201, response.text
    return dict(response.json())


def expected_digest(invoice: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON: sorted keys, no whitespace, UTF-8, without digest."""
    body = {k: v for k, v in invoice.items() if k != "digest"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def year_of(invoice: dict[str, Any]) -> int:
    """The UTC year the invoice was issued in: its number's year (not the test's clock,
    which may have passed New Year since)."""
    return datetime.fromisoformat(invoice["issued_at"].replace("Z", "+00:00")).astimezone(UTC).year


def number(seq: int, year: int) -> str:
    return f"LUC-{year}-{seq:06d}"


def line_key(line: dict[str, Any]) -> tuple[str, str, str, int]:
    return (line["agent"], line["model"], line["provider"], line["catalog_version"])


def tokens_of(line: dict[str, Any]) -> tuple[int, ...]:
    return tuple(line[t] for t in TOKEN_FIELDS)


async def covered_event_ids(db: asyncpg.Connection, invoice_number: str) -> list[str]:
    rows = await db.fetch(
        """
        SELECT l.event_id FROM invoice_entries AS i
        JOIN ledger_entries AS l ON l.id = i.ledger_entry_id
        WHERE i.invoice_number = $1 ORDER BY l.event_id, l.id
        """,
        invoice_number,
    )
    return [r["event_id"] for r in rows]


JOB_A = "job-inv-a"
EVENTS_A = [
    # Sonnet: 12,345 × 3 + 678 × 15 = 37,035 + 10,170 = 47,205 per 1M → 0.047205
    event(
        "a1", job_id=JOB_A, agent="ACHEEVY", model=SONNET, input_tokens=12_345, output_tokens=678
    ),
    # Sonnet, cache reads at 0.30 and reasoning at its default (output):
    # 600 × 3 + 400 × 0.30 + 60 × 15 + 40 × 15 = 1,800 + 120 + 900 + 600 = 3,420 → 0.00342
    event(
        "a2",
        job_id=JOB_A,
        agent="ACHEEVY",
        model=SONNET,
        occurred_at="2026-10-11T09:00:00Z",
        input_tokens=1_000,
        cached_input_tokens=400,
        output_tokens=100,
        reasoning_tokens=40,
    ),
    # Flash by alias: 10,000 × 0.10 + 40,000 cached × 0.01 + 2,000 × 0.40
    # = 1,000 + 400 + 800 = 2,200 → 0.0022
    event(
        "a3",
        job_id=JOB_A,
        agent="ORACLE",
        model="gemini-3.0-flash",
        provider="vertex",
        input_tokens=50_000,
        cached_input_tokens=40_000,
        output_tokens=2_000,
        reasoning_tokens=1_000,
    ),
    # Llama: (3,000 + 2,000) × 0.10 = 500 → 0.0005
    event(
        "a4", job_id=JOB_A, agent="ByteRover", model=LLAMA, input_tokens=3_000, output_tokens=2_000
    ),
    # A model no catalog version knows: kept, unpriced, not billed.
    event(
        "a5",
        job_id=JOB_A,
        agent="ByteRover",
        model="mistralai/unknown-x",
        occurred_at="2026-10-12T18:30:00Z",
        input_tokens=1_000,
        output_tokens=100,
    ),
]


async def test_an_invoice_total_is_the_jobs_ledger_total_rounded_once_to_cents(
    client: Any, db: asyncpg.Connection
) -> None:
    await record_accepted(client, EVENTS_A)
    # 0.047205 + 0.00342 + 0.0022 + 0.0005 = 0.053325
    job = (await client.get(f"/v1/jobs/{JOB_A}")).json()
    assert job["cost_usd"] == "0.053325"

    preview = (await client.get(f"/v1/jobs/{JOB_A}/invoice")).json()
    assert preview["number"] is None and preview["issued_at"] is None
    assert preview["total_usd"] == "0.05"
    assert preview["status"] == "open"
    assert preview["earlier_invoices"] == []

    invoice = await issue(client, JOB_A)
    assert invoice["number"] == number(1, year_of(invoice))
    assert invoice["job_id"] == JOB_A
    assert invoice["currency"] == "USD"
    assert invoice["follow_up_of"] is None
    assert invoice["subtotal_usd"] == "0.053325"
    # 0.053325 → 0.05; the difference is shown
    assert invoice["total_usd"] == "0.05"
    assert invoice["rounding_usd"] == "-0.003325"
    assert "half up" in invoice["rounding_rule"]
    assert "ROUND_HALF_UP" in invoice["rounding_rule"]
    assert invoice["events"] == 4
    assert invoice["covered_entries"] == 4
    assert invoice["unpriced_events"] == 1
    assert any("Not billed: 1 unpriced event" in n for n in invoice["notes"])
    assert invoice["period_start"] == "2026-10-10T09:00:00Z"
    assert invoice["period_end"] == "2026-10-11T09:00:00Z"
    assert invoice["issued_at"].endswith("Z")
    assert invoice["digest"] == expected_digest(invoice)

    lines = {line_key(line): line for line in invoice["lines"]}
    assert list(lines) == [
        ("ACHEEVY", SONNET, "openrouter", 1),
        ("ByteRover", LLAMA, "openrouter", 1),
        ("ORACLE", FLASH, "vertex", 1),
    ]
    sonnet = lines[("ACHEEVY", SONNET, "openrouter", 1)]
    # 0.047205 + 0.00342 = 0.050625; tokens a1 + a2
    assert sonnet["amount_usd"] == "0.050625"
    assert sonnet["events"] == 2
    assert tokens_of(sonnet) == (13_345, 400, 0, 778, 40)
    assert (sonnet["long_context_from"], sonnet["rate"]) == (None, "base")
    assert sonnet["unit_prices"] == {
        "input": "3",
        "output": "15",
        "cache_read": "0.3",
        "cache_write": "3.75",
        "reasoning": "15",
        "per_request": "0",
    }
    assert sonnet["model_name"] == "Claude Sonnet 4.5"
    assert lines[("ByteRover", LLAMA, "openrouter", 1)]["amount_usd"] == "0.0005"
    flash = lines[("ORACLE", FLASH, "vertex", 1)]
    assert (flash["amount_usd"], tokens_of(flash)) == ("0.0022", (50_000, 40_000, 0, 2_000, 1_000))
    assert sum(Decimal(line["amount_usd"]) for line in invoice["lines"]) == Decimal("0.053325")

    # The unpriced event is not covered: it waits for a price.
    assert await covered_event_ids(db, invoice["number"]) == ["a1", "a2", "a3", "a4"]
    again = (await client.get(f"/v1/invoices/{invoice['number']}")).json()
    assert again == invoice


async def test_a_total_of_exactly_half_a_cent_rounds_up_where_half_even_would_round_down(
    client: Any,
) -> None:
    # (1,000,000 + 250,000) × 0.10 = 125,000 per 1M → 0.125 exactly.
    # Half up: 0.13. (Half even would give 0.12: the rule matters and is stated.)
    await record_accepted(
        client,
        [
            event(
                "h1",
                job_id="job-half",
                agent="ORACLE",
                model=LLAMA,
                input_tokens=1_000_000,
                output_tokens=250_000,
            )
        ],
    )
    invoice = await issue(client, "job-half")
    assert invoice["subtotal_usd"] == "0.125"
    assert invoice["total_usd"] == "0.13"
    assert invoice["rounding_usd"] == "0.005"
    assert invoice["digest"] == expected_digest(invoice)


async def test_late_usage_after_issue_goes_on_a_follow_up_with_exactly_the_late_entries(
    client: Any, db: asyncpg.Connection
) -> None:
    job = "job-late"
    await record_accepted(
        client,
        [
            # 10,000 × 3 + 1,000 × 15 = 45,000 → 0.045
            event(
                "l1",
                job_id=job,
                agent="ACHEEVY",
                model=SONNET,
                input_tokens=10_000,
                output_tokens=1_000,
            ),
            # 20,000 × 0.10 + 5,000 × 0.40 = 4,000 → 0.004
            event(
                "l2",
                job_id=job,
                agent="ORACLE",
                model=FLASH,
                input_tokens=20_000,
                output_tokens=5_000,
            ),
        ],
    )
    first = await issue(client, job)
    # 0.049 → 0.05
    assert (first["subtotal_usd"], first["total_usd"], first["rounding_usd"]) == (
        "0.049",
        "0.05",
        "0.001",
    )
    assert first["customer"] is None

    patched = await client.patch(
        f"/v1/jobs/{job}",
        json={
            "status": "closed",
            "customer": "Acme Corp",
            "title": "Q4 research",
            "reference": "PO-7731",
        },
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["status"] == "closed"

    # A closed job still records usage; it lands on the follow-up.
    await record_accepted(
        client,
        [
            # 2,000 × 3 + 300 × 15 = 6,000 + 4,500 = 10,500 → 0.0105
            event(
                "l3",
                job_id=job,
                agent="ACHEEVY",
                model=SONNET,
                occurred_at="2026-10-20T08:00:00Z",
                input_tokens=2_000,
                output_tokens=300,
            ),
            # Haiku: 5,000 × 0.80 + 1,000 × 4.00 = 8,000 → 0.008
            event(
                "l4",
                job_id=job,
                agent="ByteRover",
                model=HAIKU,
                occurred_at="2026-10-21T08:00:00Z",
                input_tokens=5_000,
                output_tokens=1_000,
            ),
        ],
    )
    second = await issue(client, job)
    assert second["number"] == number(2, year_of(second))
    assert second["follow_up_of"] == first["number"]
    assert second["covered_entries"] == 2
    assert await covered_event_ids(db, second["number"]) == ["l3", "l4"]
    assert [(line_key(x), x["events"], x["amount_usd"]) for x in second["lines"]] == [
        (("ACHEEVY", SONNET, "openrouter", 1), 1, "0.0105"),
        (("ByteRover", HAIKU, "openrouter", 1), 1, "0.008"),
    ]
    # 0.0185 → 0.02
    assert (second["subtotal_usd"], second["total_usd"], second["rounding_usd"]) == (
        "0.0185",
        "0.02",
        "0.0015",
    )
    # No registered customer: the job's free-text customer is who is billed.
    assert (second["customer"], second["title"], second["reference"]) == (
        {"id": None, "name": "Acme Corp", "address": None, "tax_id": None},
        "Q4 research",
        "PO-7731",
    )
    assert any(first["number"] in n for n in second["notes"])
    # So does every row of its CSV (no id to name).
    sheet = (await client.get(f"/v1/invoices/{second['number']}", params={"format": "csv"})).text
    rows = list(csv.DictReader(io.StringIO(sheet.removeprefix("\ufeff"))))
    assert {(r["customer_id"], r["customer_name"]) for r in rows} == {("", "Acme Corp")}
    # The subtotals together are the job's ledger total: 0.049 + 0.0185
    assert (await client.get(f"/v1/jobs/{job}")).json()["cost_usd"] == "0.0675"

    # The first invoice did not change.
    assert (await client.get(f"/v1/invoices/{first['number']}")).json() == first

    # Nothing new: refused, with the reason.
    refused = await client.post(f"/v1/jobs/{job}/invoices")
    assert refused.status_code == 409, refused.text
    detail = refused.json()["detail"]
    assert "nothing new to invoice" in detail
    assert first["number"] in detail and second["number"] in detail

    preview = (await client.get(f"/v1/jobs/{job}/invoice")).json()
    assert (preview["lines"], preview["covered_entries"], preview["total_usd"]) == ([], 0, "0.00")
    assert preview["earlier_invoices"] == [first["number"], second["number"]]
    assert preview["status"] == "closed"

    listed = (await client.get("/v1/invoices", params={"job_id": job})).json()
    assert [(i["number"], i["total_usd"]) for i in listed["items"]] == [
        (first["number"], "0.05"),
        (second["number"], "0.02"),
    ]
    assert [i["digest"] for i in listed["items"]] == [first["digest"], second["digest"]]
    assert (await client.get("/v1/invoices", params={"job_id": "nobody"})).json()["items"] == []


async def test_a_job_without_usage_has_no_invoice_and_bad_job_changes_are_refused(
    client: Any,
) -> None:
    assert (await client.post("/v1/jobs/ghost/invoices")).status_code == 404
    assert (await client.get("/v1/jobs/ghost/invoice")).status_code == 404
    assert (await client.get("/v1/invoices/LUC-2026-999999")).status_code == 404
    bad = await client.patch("/v1/jobs/ghost", json={"status": "done"})
    assert bad.status_code == 422 and "status" in bad.json()["detail"]
    assert (await client.patch("/v1/jobs/ghost", json={"colour": "red"})).status_code == 400
    # Metadata may come before usage; null clears a field, absent keeps it.
    first = await client.patch("/v1/jobs/ghost", json={"customer": "Acme", "title": "T"})
    assert first.status_code == 200, first.text
    assert (first.json()["status"], first.json()["customer"]) == ("open", "Acme")
    cleared = (await client.patch("/v1/jobs/ghost", json={"customer": None})).json()
    assert (cleared["customer"], cleared["title"]) == (None, "T")


async def test_an_issued_invoice_cannot_be_changed_and_still_verifies_after_more_usage(
    client: Any, db: asyncpg.Connection
) -> None:
    await record_accepted(
        client,
        [
            event(
                "i1",
                job_id="job-imm",
                agent="ACHEEVY",
                model=SONNET,
                input_tokens=1_000,
                output_tokens=10,
            )
        ],
    )
    invoice = await issue(client, "job-imm")
    # 1,000 × 3 + 10 × 15 = 3,150 → 0.00315 → 0.00
    assert (invoice["subtotal_usd"], invoice["total_usd"]) == ("0.00315", "0.00")
    assert invoice["rounding_usd"] == "-0.00315"
    n = invoice["number"]

    for statement in (
        "UPDATE invoices SET total_usd = 100 WHERE number = $1",
        "DELETE FROM invoices WHERE number = $1",
        "UPDATE invoice_lines SET amount_usd = 0 WHERE invoice_number = $1",
        "DELETE FROM invoice_lines WHERE invoice_number = $1",
        "UPDATE invoice_entries SET ledger_entry_id = 0 WHERE invoice_number = $1",
        "DELETE FROM invoice_entries WHERE invoice_number = $1",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await db.execute(statement, n)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("TRUNCATE invoices CASCADE")
    # The year's counter only moves forward: it cannot be deleted to hand numbers out again.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await db.execute("DELETE FROM invoice_counters")
    # Nor can a row be slipped in whose digest does not match its text.
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            """
            INSERT INTO invoices (number, year, seq, job_id, issued_at, currency, subtotal_usd,
                rounding_rule, rounding_usd, total_usd, covered_entries, unpriced_events,
                canonical, digest)
            SELECT 'LUC-1999-000001', 1999, 1, job_id, issued_at, currency, subtotal_usd,
                rounding_rule, rounding_usd, total_usd, covered_entries, unpriced_events,
                replace(canonical, '0.00315', '0.00001'), digest
            FROM invoices WHERE number = $1
            """,
            n,
        )

    await record_accepted(
        client,
        [
            event(
                "i2",
                job_id="job-imm",
                agent="ACHEEVY",
                model=SONNET,
                input_tokens=5_000,
                output_tokens=50,
            )
        ],
    )
    after = (await client.get(f"/v1/invoices/{n}")).json()
    assert after == invoice
    assert after["digest"] == expected_digest(after)
    stored = await db.fetchrow("SELECT canonical, digest FROM invoices WHERE number = $1", n)
    assert stored is not None
    assert hashlib.sha256(stored["canonical"].encode()).hexdigest() == stored["digest"]
    assert stored["digest"] == invoice["digest"]


async def test_an_unpriced_event_and_a_price_correction_reach_the_follow_up_as_the_ledger_says(
    client: Any, db: asyncpg.Connection
) -> None:
    job = "job-fix"
    mistral = "mistralai/mistral-large-2512"
    await record_accepted(
        client,
        [
            # v1: Llama has no cache price, so cache reads are at the input price:
            # 1,000,000 × 0.10 + 20,000 × 0.10 = 102,000 → 0.102
            event(
                "f1",
                job_id=job,
                agent="ACHEEVY",
                model=LLAMA,
                input_tokens=1_000_000,
                cached_input_tokens=900_000,
                output_tokens=20_000,
            ),
            event(
                "f2",
                job_id=job,
                agent="ByteRover",
                model=mistral,
                input_tokens=30_000,
                output_tokens=2_000,
            ),
        ],
    )
    first = await issue(client, job)
    assert (first["subtotal_usd"], first["total_usd"], first["unpriced_events"]) == (
        "0.102",
        "0.10",
        1,
    )
    assert first["rounding_usd"] == "-0.002"

    # A correction (illustrative): Llama's cache reads cost $0.01, from before the event.
    corrected = await client.post(
        "/v1/catalog/versions",
        json={
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
        },
    )
    assert corrected.status_code == 201, corrected.text
    v2 = corrected.json()["id"]
    rerated = await client.post(
        "/v1/catalog/rerate", json={"since": "2026-09-01T00:00:00Z", "dry_run": False}
    )
    assert rerated.status_code == 200, rerated.text
    # Then a version that prices the unknown model: $0.50 / $1.50.
    priced = await client.post(
        "/v1/catalog/versions",
        json={
            "effective_from": "2026-09-01T00:00:00Z",
            "parent": v2,
            "models": [
                {
                    "id": mistral,
                    "name": "Mistral Large 3",
                    "tier": "standard",
                    "input": "0.50",
                    "output": "1.50",
                }
            ],
        },
    )
    assert priced.status_code == 201, priced.text
    v3 = priced.json()["id"]

    follow_up = await issue(client, job)
    assert follow_up["follow_up_of"] == first["number"]
    # f1's reversal and re-booking; f2's unpriced charge, its reversal and its priced booking
    assert follow_up["covered_entries"] == 5
    assert await covered_event_ids(db, follow_up["number"]) == ["f1", "f1", "f2", "f2", "f2"]
    assert [
        (line_key(x), x["events"], tokens_of(x), x["amount_usd"]) for x in follow_up["lines"]
    ] == [
        # the reversal of what the first invoice billed
        (
            ("ACHEEVY", LLAMA, "openrouter", 1),
            -1,
            (-1_000_000, -900_000, 0, -20_000, 0),
            "-0.102",
        ),
        # 100,000 × 0.10 + 900,000 × 0.01 + 20,000 × 0.10 = 10,000 + 9,000 + 2,000 → 0.021
        (("ACHEEVY", LLAMA, "openrouter", v2), 1, (1_000_000, 900_000, 0, 20_000, 0), "0.021"),
        # 30,000 × 0.50 + 2,000 × 1.50 = 18,000 → 0.018
        (("ByteRover", mistral, "openrouter", v3), 1, (30_000, 0, 0, 2_000, 0), "0.018"),
    ]
    # −0.102 + 0.021 + 0.018 = −0.063 → −0.06: a credit, rounded by the same rule
    assert (follow_up["subtotal_usd"], follow_up["total_usd"], follow_up["rounding_usd"]) == (
        "-0.063",
        "-0.06",
        "0.003",
    )
    assert follow_up["unpriced_events"] == 0
    # 0.102 − 0.063 = 0.039 = 0.021 + 0.018, the job's ledger total
    assert (await client.get(f"/v1/jobs/{job}")).json()["cost_usd"] == "0.039"


async def test_the_csv_parses_names_each_row_and_adds_up_as_shown_and_exactly(
    client: Any,
) -> None:
    await record_accepted(client, EVENTS_A)
    invoice = await issue(client, JOB_A)
    response = await client.get(f"/v1/invoices/{invoice['number']}", params={"format": "csv"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    # A byte-order mark first, for Excel (forms.CSV_BOM).
    assert response.text.startswith("\ufeffinvoice,")
    rows = list(csv.DictReader(io.StringIO(response.text.removeprefix("\ufeff"))))
    # Every row names the invoice, its kind, the customer (none here) and the job.
    assert {(r["invoice"], r["kind"], r["customer_id"], r["job_id"]) for r in rows} == {
        (invoice["number"], "invoice", "", JOB_A)
    }
    lines = [r for r in rows if r["row_type"] == "line"]
    # Every digit, as billed: rounding happens once, at the total.
    assert [(r["agent"], r["model"], r["amount_usd"], r["amount_exact_usd"]) for r in lines] == [
        ("ACHEEVY", SONNET, "0.050625", "0.050625"),
        ("ByteRover", LLAMA, "0.0005", "0.0005"),
        ("ORACLE", FLASH, "0.0022", "0.0022"),
    ]
    summary = {r["row_type"]: r for r in rows if r["row_type"] != "line"}
    assert [r["row_type"] for r in rows if r["row_type"] != "line"] == [
        "subtotal",
        "rounding",
        "total",
        "credits",
        "amount_due",
        "not_billed",
    ]
    # The shown column: 0.050625 + 0.0005 + 0.0022 = 0.053325, rounded once to 0.05
    assert (summary["subtotal"]["amount_usd"], summary["subtotal"]["amount_exact_usd"]) == (
        "0.053325",
        "0.053325",
    )
    assert sum(Decimal(r["amount_usd"]) for r in lines) == Decimal("0.053325")
    assert (summary["rounding"]["amount_usd"], summary["rounding"]["amount_exact_usd"]) == (
        "-0.003325",
        "-0.003325",
    )
    assert (summary["total"]["amount_usd"], summary["total"]["amount_exact_usd"]) == (
        "0.05",
        "0.05",
    )
    assert (summary["credits"]["amount_usd"], summary["amount_due"]["amount_usd"]) == (
        "0.00",
        "0.05",
    )
    assert "ROUND_HALF_UP" in summary["rounding"]["note"]
    assert summary["not_billed"]["note"] == "1 unpriced events, not billed"
    sonnet = lines[0]
    assert (sonnet["input_tokens"], sonnet["catalog_version"], sonnet["rate"]) == (
        "13345",
        "1",
        "base",
    )
    # One readable price per class the line has tokens of: a1 + a2 hold 12,945 plain input
    # tokens, 400 cached, 738 plain output and 40 reasoning; no cache writes.
    assert sonnet["unit_prices"] == (
        "input 3.00 / 1M tokens; cache read 0.30 / 1M tokens; output 15.00 / 1M tokens; "
        "reasoning 15.00 / 1M tokens"
    )
    # The customer's forms never show what the calls cost LUC.
    assert "actual_cost" not in response.text.splitlines()[0]

    html = await client.get(f"/v1/invoices/{invoice['number']}", params={"format": "html"})
    assert html.headers["content-type"] == "text/html; charset=utf-8"
    assert invoice["number"] in html.text and "0.05" in html.text
    assert (await client.get(f"/v1/invoices/{invoice['number']}?format=pdf")).status_code == 400


async def test_invoices_issued_concurrently_take_consecutive_numbers_without_gaps(
    server_factory: Any, db: asyncpg.Connection
) -> None:
    # A real server process: requests to it run side by side (the in-process test client
    # would run them one at a time).
    server = server_factory()
    jobs = [f"job-c{i}" for i in range(5)]
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        await record_accepted(
            http,
            [
                event(
                    f"c{i}",
                    job_id=j,
                    agent="ACHEEVY",
                    model=FLASH,
                    input_tokens=1_000,
                    output_tokens=0,
                )
                for i, j in enumerate(jobs)
            ],
        )
        # Five jobs at once, one of them twice: the second issue of job-c0 finds nothing
        # new, and its refusal must not burn a number. The counter table is held locked
        # until all six requests wait (five on the counter, one behind job-c0's first
        # issue), so they really do reach the year's counter together.
        async with db.transaction():
            await db.execute("LOCK TABLE invoice_counters IN EXCLUSIVE MODE")
            requests = [
                asyncio.create_task(http.post(f"/v1/jobs/{j}/invoices")) for j in [*jobs, jobs[0]]
            ]
            waiting = on_counter = 0
            for _ in range(200):
                # Activity is a snapshot per transaction unless cleared.
                await db.execute("SELECT pg_stat_clear_snapshot()")
                waiting = await db.fetchval(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
                if waiting == 6:
                    break
                await asyncio.sleep(0.05)
            on_counter = await db.fetchval(
                "SELECT count(*) FROM pg_locks "
                "WHERE relation = 'invoice_counters'::regclass AND NOT granted"
            )
        responses = await asyncio.gather(*requests)
        assert (waiting, on_counter) == (6, 5)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [201, 201, 201, 201, 201, 409], [r.text for r in responses]
        issued = [r.json() for r in responses if r.status_code == 201]
        # One year's counter: all six requests met it within a moment.
        (year,) = {year_of(i) for i in issued}
        assert sorted(i["number"] for i in issued) == [number(s, year) for s in range(1, 6)]
        assert sorted(i["job_id"] for i in issued) == jobs
        # Issue times follow number order.
        by_number = sorted(issued, key=lambda i: i["number"])
        assert [i["issued_at"] for i in by_number] == sorted(i["issued_at"] for i in issued)

        await record_accepted(
            http,
            [
                # 100,000 × 0.10 = 10,000 per 1M → 0.01: a follow-up worth a cent
                event(
                    "c9",
                    job_id=jobs[3],
                    agent="ACHEEVY",
                    model=FLASH,
                    input_tokens=100_000,
                    output_tokens=0,
                )
            ],
        )
        sixth = await issue(http, jobs[3])
        assert sixth["number"] == number(6, year_of(sixth))
    year = year_of(sixth)
    assert await db.fetchval("SELECT last_number FROM invoice_counters WHERE year = $1", year) == 6
    seqs = [r["seq"] for r in await db.fetch("SELECT seq FROM invoices ORDER BY seq")]
    assert seqs == [1, 2, 3, 4, 5, 6]


async def test_luc_invoice_verify_accepts_an_export_and_fails_on_a_tampered_one(
    client: Any, database_url: str, tmp_path: Path
) -> None:
    await record_accepted(client, EVENTS_A)
    issued = await luc_on(database_url, "invoice", "issue", JOB_A)
    assert issued.returncode == 0, issued.stderr
    invoice = json.loads(issued.stdout)
    assert (invoice["number"], invoice["total_usd"]) == (number(1, year_of(invoice)), "0.05")
    assert invoice["digest"] == expected_digest(invoice)

    shown = await luc_on(database_url, "invoice", "show", invoice["number"], "--format", "json")
    assert shown.returncode == 0, shown.stderr
    export = tmp_path / "invoice.json"
    export.write_text(shown.stdout, encoding="utf-8")
    assert json.loads(shown.stdout) == invoice

    good = await luc_on(database_url, "invoice", "verify", str(export))
    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout
    stored = await luc_on(database_url, "invoice", "verify", invoice["number"])
    assert stored.returncode == 0, stored.stderr

    tampered = json.loads(shown.stdout)
    tampered["lines"][0]["amount_usd"] = "0.040625"
    tampered["subtotal_usd"] = "0.043325"
    tampered["rounding_usd"] = "-0.003325"
    tampered["total_usd"] = "0.04"
    tampered["amount_due_usd"] = "0.04"
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(tampered, indent=2), encoding="utf-8")
    bad = await luc_on(database_url, "invoice", "verify", str(forged))
    assert bad.returncode == 1
    assert "FAILED" in bad.stderr and "digest mismatch" in bad.stderr

    # Re-computing the digest does not help against the stored invoice.
    tampered["digest"] = expected_digest(tampered)
    forged.write_text(json.dumps(tampered), encoding="utf-8")
    alone = await luc_on(database_url, "invoice", "verify", str(forged))
    assert alone.returncode == 0  # self-consistent on its own...
    against = await luc_on(database_url, "invoice", "verify", str(forged), "--against-stored")
    assert against.returncode == 1  # ...but not the invoice that was issued
    assert "stored invoice" in against.stderr
    # A database that cannot be reached says nothing of the invoice: the command's error,
    # not "does not verify".
    unreachable = f"postgresql://luc@127.0.0.1:{free_port()}/luc"
    cannot = await luc_on(unreachable, "invoice", "verify", str(forged), "--against-stored")
    assert cannot.returncode == 1
    assert "FAILED" not in cannot.stderr and "Error: " in cannot.stderr, cannot.stderr

    csv_out = await luc_on(database_url, "invoice", "show", invoice["number"], "--format", "csv")
    assert csv_out.returncode == 0
    amount_due = [
        r for r in csv.DictReader(io.StringIO(csv_out.stdout)) if r["row_type"] == "amount_due"
    ]
    assert [(r["amount_usd"], r["amount_exact_usd"]) for r in amount_due] == [("0.05", "0.05")]
    preview = await luc_on(database_url, "invoice", "preview", JOB_A)
    assert preview.returncode == 0, preview.stderr
    assert json.loads(preview.stdout)["earlier_invoices"] == [invoice["number"]]
    nothing = await luc_on(database_url, "invoice", "issue", JOB_A)
    assert nothing.returncode == 1 and "nothing new to invoice" in nothing.stderr
