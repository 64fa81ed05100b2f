"""Stub answers (the gateway's heuristic mode: no LLM called) on the ledger and on invoices.

A stub answer is recorded, so finance sees what was asked in heuristic mode, but it is no
LLM call: nobody paid a provider for it. It is booked at zero with its reason, counts
nothing towards spend, and an invoice lists it apart, as not billed. A stub event whose
model the catalog lacks stays unpriced, like any other: unpriced is never silently zero.

Prices (AIMS catalog, version 1, USD per 1M tokens): Claude Sonnet 4.5 $3 in / $15 out,
Gemini 3.0 Flash $0.10 / $0.40.
"""

from __future__ import annotations

import csv
import io
from typing import Any

import asyncpg

from tests.scenarios.test_invoices import FLASH, SONNET, event, expected_digest
from tests.support.events import record_accepted as record

NOT_BILLED = "not billed: stub answer (heuristic mode, no LLM was called)"
JOB = "job-stub"
ZERO_PRICES = {
    "input": "0",
    "output": "0",
    "cache_read": "0",
    "cache_write": "0",
    "reasoning": "0",
    "per_request": "0",
}
# Sonnet: 12,345 × 3 + 678 × 15 = 37,035 + 10,170 = 47,205 per 1M → 0.047205
REAL_CALL = event(
    "r1", job_id=JOB, agent="ACHEEVY", model=SONNET, input_tokens=12_345, output_tokens=678
)
STUB_ANSWERS = [
    # At Flash's catalog price these would be 1,000 × 0.10 + 500 × 0.40 = 300 per 1M and
    # 200 × 0.10 + 100 × 0.40 = 60 per 1M; they cost nothing.
    event(
        "s1",
        job_id=JOB,
        agent="ACHEEVY",
        model=FLASH,
        provider="stub",
        input_tokens=1_000,
        output_tokens=500,
    ),
    event(
        "s2",
        job_id=JOB,
        agent="ACHEEVY",
        model=FLASH,
        provider="stub",
        input_tokens=200,
        output_tokens=100,
    ),
]
# A stub answer for a model no catalog version knows: unpriced, like any other event.
STUB_UNKNOWN = event(
    "s3",
    job_id=JOB,
    agent="ByteRover",
    model="mistralai/unknown-x",
    provider="stub",
    input_tokens=10,
    output_tokens=1,
)


async def test_stub_answers_are_recorded_at_zero_and_listed_apart_as_not_billed(
    client: Any, db: asyncpg.Connection
) -> None:
    await record(client, [REAL_CALL, *STUB_ANSWERS, STUB_UNKNOWN])

    job = (await client.get(f"/v1/jobs/{JOB}")).json()
    assert (job["cost_usd"], job["events"], job["unpriced_events"]) == ("0.047205", 4, 1)
    lines = {(x["agent"], x["model"], x["provider"]): x for x in job["lines"]}
    stub_line = lines[("ACHEEVY", FLASH, "stub")]
    assert (stub_line["cost_usd"], stub_line["events"]) == ("0", 2)
    assert lines[("ByteRover", "mistralai/unknown-x", "stub")]["cost_usd"] is None
    entries = (await client.get(f"/v1/jobs/{JOB}/entries")).json()["items"]
    assert [(e["event_id"], e["cost_usd"], e["reason"]) for e in entries] == [
        ("r1", "0.047205", None),
        ("s1", "0", NOT_BILLED),
        ("s2", "0", NOT_BILLED),
        ("s3", None, "model 'mistralai/unknown-x' is not in catalog version 1"),
    ]
    unpriced = (await client.get("/v1/unpriced")).json()["items"]
    assert [u["id"] for u in unpriced] == ["s3"]

    preview = (await client.get(f"/v1/jobs/{JOB}/invoice")).json()
    assert [(x["model"], x["amount_usd"]) for x in preview["lines"]] == [(SONNET, "0.047205")]
    assert preview["not_billed"] == [
        {
            "agent": "ACHEEVY",
            "model": FLASH,
            "model_name": "Gemini 3.0 Flash",
            "provider": "stub",
            "catalog_version": 1,
            "tier": "fast",
            "events": 2,
            "input_tokens": 1_200,
            "cached_input_tokens": 0,
            "cache_write_tokens": 0,
            "output_tokens": 600,
            "reasoning_tokens": 0,
            "long_context_from": None,
            "rate": "base",
            "unit_prices": ZERO_PRICES,
            "amount_usd": "0",
            "reason": NOT_BILLED,
        }
    ]

    issued = await client.post(f"/v1/jobs/{JOB}/invoices")
    assert issued.status_code == 201, issued.text
    invoice = issued.json()
    assert (invoice["subtotal_usd"], invoice["total_usd"], invoice["events"]) == (
        "0.047205",
        "0.05",
        1,
    )
    assert invoice["not_billed"] == preview["not_billed"]
    assert invoice["covered_entries"] == 3  # the real call and the two stub answers
    assert invoice["unpriced_events"] == 1
    assert (
        "Not billed: 2 stub answers (LUC's heuristic mode: no LLM was called); their usage is "
        "listed under not billed, at zero."
    ) in invoice["notes"]
    assert invoice["digest"] == expected_digest(invoice)
    number = invoice["number"]
    assert (await client.get(f"/v1/invoices/{number}")).json() == invoice
    # Only the billed line is an invoice line in the database.
    assert (
        await db.fetchval("SELECT count(*) FROM invoice_lines WHERE invoice_number = $1", number)
        == 1
    )

    exported = await client.get(f"/v1/invoices/{number}", params={"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    stub_rows = [r for r in rows if r["row_type"] == "not_billed" and r["provider"] == "stub"]
    assert [(r["model"], r["events"], r["amount_usd"], r["note"]) for r in stub_rows] == [
        (FLASH, "2", "0.00", NOT_BILLED)
    ]
    assert [r["amount_exact_usd"] for r in rows if r["row_type"] == "line"] == ["0.047205"]
    html = (await client.get(f"/v1/invoices/{number}", params={"format": "html"})).text
    assert ">Not billed</h2>" in html and NOT_BILLED in html


async def test_a_job_of_stub_answers_alone_has_nothing_to_bill_until_real_usage_arrives(
    client: Any,
) -> None:
    await record(client, STUB_ANSWERS)
    preview = (await client.get(f"/v1/jobs/{JOB}/invoice")).json()
    assert (preview["lines"], preview["total_usd"]) == ([], "0.00")
    assert [x["events"] for x in preview["not_billed"]] == [2]

    refused = await client.post(f"/v1/jobs/{JOB}/invoices")
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        f"nothing new to invoice for job '{JOB}': its new usage is 2 stub answers (no LLM "
        "was called), which is never billed; it is listed as not billed on the job's next "
        "invoice"
    )

    await record(client, [REAL_CALL])
    issued = await client.post(f"/v1/jobs/{JOB}/invoices")
    assert issued.status_code == 201, issued.text
    invoice = issued.json()
    assert (invoice["total_usd"], invoice["covered_entries"]) == ("0.05", 3)
    assert [x["events"] for x in invoice["not_billed"]] == [2]


async def test_stub_answers_add_nothing_to_spend_or_to_the_cost_series(client: Any) -> None:
    await record(client, [REAL_CALL, *STUB_ANSWERS])
    usage = (await client.get("/v1/usage", params={"group_by": "provider"})).json()["rows"]
    assert {r["provider"]: (r["cost_usd"], r["events"]) for r in usage} == {
        "openrouter": ("0.047205", 1),
        "stub": ("0", 2),
    }
    metrics = (await client.get("/metrics")).text
    stub_cost = [
        line
        for line in metrics.splitlines()
        if line.startswith("luc_cost_usd{") and 'provider="stub"' in line
    ]
    assert len(stub_cost) == 1 and stub_cost[0].endswith(" 0.0")
