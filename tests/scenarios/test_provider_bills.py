"""Prices that match the providers' bill: cached tokens, cache writes and long context on
an Anthropic, an OpenAI and a Google model, priced by hand and read back through the job,
its ledger entries and its invoice.

The AIMS catalog (version 1), USD per 1M tokens, as its ``notes`` say the providers bill:

- Claude Sonnet 4.5: input 3.00, output 15.00, cache read 0.30 (0.1×), cache write 3.75
  (1.25×); when a call's input tokens (cached included) reach 200,001, every token of it at
  6.00 / 22.50, cache read 0.60, cache write 7.50, reasoning 22.50.
- GPT-5.1: input 3.00, output 12.00, cache read 0.30; no cache-write surcharge (writes at
  the input price).
- Gemini 3 Pro: input 1.25, output 10.00, cache read 0.125, cache writes at input; from
  200,001 input tokens 2.50 / 15.00, cache read 0.25, cache writes at 2.50.

Reasoning tokens are priced as output throughout.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal
from functools import partial
from typing import Any

import asyncpg

from tests.support.events import record_accepted, wire_event
from tests.support.ledger_truth import assert_rollups_equal_ledger

SONNET = "anthropic/claude-sonnet-4.5"
GPT = "openai/gpt-5.1"
PRO = "google/gemini-3-pro-preview"
LONG_RATE = "long context ≥ 200,001 input tokens"

event = partial(wire_event, occurred_at="2026-11-02T10:00:00Z")

CACHED = [
    # The README's example, as OpenRouter answered it: 102 plain input tokens·3.00
    # + 2,048 cached·0.30 + 4 output·15.00 = 306 + 614.4 + 60 = 980.4 per 1M → 0.0009804,
    # exactly what the provider reported.
    event(
        "readme",
        job_id="job-cache",
        agent="ACHEEVY",
        model=SONNET,
        input_tokens=2_150,
        cached_input_tokens=2_048,
        output_tokens=4,
        provider_cost_usd="0.0009804",
    ),
    # 10,000·3.00 + 30,000·0.30 + 10,000·3.75 + 1,500·15.00 + 500·15.00
    # = 30,000 + 9,000 + 37,500 + 22,500 + 7,500 = 106,500 → 0.1065
    event(
        "s1",
        job_id="job-cache",
        agent="ACHEEVY",
        model=SONNET,
        input_tokens=50_000,
        cached_input_tokens=30_000,
        cache_write_tokens=10_000,
        output_tokens=2_000,
        reasoning_tokens=500,
    ),
    # 10,000·3.00 + 25,000·0.30 + 5,000·3.00 (no surcharge) + 2,000·12.00 + 1,000·12.00
    # = 30,000 + 7,500 + 15,000 + 24,000 + 12,000 = 88,500 → 0.0885
    event(
        "g1",
        job_id="job-cache",
        agent="ORACLE",
        model=GPT,
        input_tokens=40_000,
        cached_input_tokens=25_000,
        cache_write_tokens=5_000,
        output_tokens=3_000,
        reasoning_tokens=1_000,
    ),
    # 12,000·1.25 + 40,000·0.125 + 8,000·1.25 + 2,000·10.00 + 2,000·10.00
    # = 15,000 + 5,000 + 10,000 + 20,000 + 20,000 = 70,000 → 0.07
    event(
        "p1",
        job_id="job-cache",
        agent="ByteRover",
        model=PRO,
        provider="vertex",
        input_tokens=60_000,
        cached_input_tokens=40_000,
        cache_write_tokens=8_000,
        output_tokens=4_000,
        reasoning_tokens=2_000,
    ),
]

LONG = [
    # 200,000 input tokens: below the threshold, the base rate.
    # 30,000·3.00 + 150,000·0.30 + 20,000·3.75 + 1,000·15.00
    # = 90,000 + 45,000 + 75,000 + 15,000 = 225,000 → 0.225
    event(
        "s-base",
        job_id="job-long",
        agent="ORACLE",
        model=SONNET,
        input_tokens=200_000,
        cached_input_tokens=150_000,
        cache_write_tokens=20_000,
        output_tokens=1_000,
    ),
    # 200,001: every token at the long rate.
    # 30,001·6.00 + 150,000·0.60 + 20,000·7.50 + 1,000·22.50
    # = 180,006 + 90,000 + 150,000 + 22,500 = 442,506 → 0.442506
    event(
        "s-long",
        job_id="job-long",
        agent="ORACLE",
        model=SONNET,
        input_tokens=200_001,
        cached_input_tokens=150_000,
        cache_write_tokens=20_000,
        output_tokens=1_000,
    ),
    # 100,000·1.25 + 100,000·0.125 + 2,000·10.00 = 125,000 + 12,500 + 20,000 → 0.1575
    event(
        "p-base",
        job_id="job-long",
        agent="ORACLE",
        model=PRO,
        provider="vertex",
        input_tokens=200_000,
        cached_input_tokens=100_000,
        output_tokens=2_000,
    ),
    # 90,001·2.50 + 100,000·0.25 + 10,000·2.50 + 1,000·15.00 + 1,000·15.00
    # = 225,002.5 + 25,000 + 25,000 + 15,000 + 15,000 = 305,002.5 → 0.3050025
    event(
        "p-long",
        job_id="job-long",
        agent="ORACLE",
        model=PRO,
        provider="vertex",
        input_tokens=200_001,
        cached_input_tokens=100_000,
        cache_write_tokens=10_000,
        output_tokens=2_000,
        reasoning_tokens=1_000,
    ),
]

COSTS = {
    "readme": "0.0009804",
    "s1": "0.1065",
    "g1": "0.0885",
    "p1": "0.07",
    "s-base": "0.225",
    "s-long": "0.442506",
    "p-base": "0.1575",
    "p-long": "0.3050025",
}
SONNET_LONG = {
    "input": "6",
    "output": "22.5",
    "cache_read": "0.6",
    "cache_write": "7.5",
    "reasoning": "22.5",
    "per_request": "0",
}
PRO_LONG = {
    "input": "2.5",
    "output": "15",
    "cache_read": "0.25",
    "cache_write": "2.5",
    "reasoning": "15",
    "per_request": "0",
}


async def get(client: Any, path: str, **params: str) -> Any:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()


async def test_cached_and_cache_write_tokens_are_priced_as_each_provider_bills_them(
    client: Any, db: asyncpg.Connection
) -> None:
    await record_accepted(client, CACHED)

    entries = (await get(client, "/v1/jobs/job-cache/entries"))["items"]
    assert {e["event_id"]: e["cost_usd"] for e in entries} == {
        e["id"]: COSTS[e["id"]] for e in CACHED
    }
    readme = next(e for e in entries if e["event_id"] == "readme")
    # The catalog's price and the provider's bill agree to the last digit.
    assert readme["cost_usd"] == readme["provider_cost_usd"] == "0.0009804"
    assert all(e["long_context_from"] is None for e in entries)

    job = await get(client, "/v1/jobs/job-cache")
    # 0.0009804 + 0.1065 + 0.0885 + 0.07
    assert job["cost_usd"] == "0.2659804"
    assert job["provider_cost_usd"] == "0.0009804"
    lines = {(x["agent"], x["model"]): x for x in job["lines"]}
    assert {k: x["cost_usd"] for k, x in lines.items()} == {
        ("ACHEEVY", SONNET): "0.1074804",  # 0.0009804 + 0.1065
        ("ORACLE", GPT): "0.0885",
        ("ByteRover", PRO): "0.07",
    }
    assert {
        k: (x["unit_prices"]["cache_read"], x["unit_prices"]["cache_write"])
        for k, x in lines.items()
    } == {
        ("ACHEEVY", SONNET): ("0.3", "3.75"),
        ("ORACLE", GPT): ("0.3", "3"),
        ("ByteRover", PRO): ("0.125", "1.25"),
    }
    await assert_rollups_equal_ledger(db)


async def test_a_call_past_the_long_context_threshold_has_every_token_at_the_long_rate(
    client: Any, db: asyncpg.Connection
) -> None:
    await record_accepted(client, LONG)

    entries = {e["event_id"]: e for e in (await get(client, "/v1/jobs/job-long/entries"))["items"]}
    assert {k: (e["cost_usd"], e["long_context_from"]) for k, e in entries.items()} == {
        "s-base": (COSTS["s-base"], None),
        "s-long": (COSTS["s-long"], 200_001),
        "p-base": (COSTS["p-base"], None),
        "p-long": (COSTS["p-long"], 200_001),
    }
    # Each entry names the unit prices that made its cost: the long rate's, per_request the
    # model's.
    assert entries["s-long"]["unit_prices"] == SONNET_LONG
    assert entries["p-long"]["unit_prices"] == PRO_LONG
    assert entries["s-base"]["unit_prices"]["input"] == "3"

    job = await get(client, "/v1/jobs/job-long")
    # 0.225 + 0.442506 + 0.1575 + 0.3050025
    assert job["cost_usd"] == "1.1300085"
    # One unit price per line: the long-rate calls are lines of their own.
    assert [
        (x["model"], x["catalog_version"], x["long_context_from"], x["rate"], x["cost_usd"])
        for x in job["lines"]
    ] == [
        (SONNET, 1, None, "base", "0.225"),
        (SONNET, 1, 200_001, LONG_RATE, "0.442506"),
        (PRO, 1, None, "base", "0.1575"),
        (PRO, 1, 200_001, LONG_RATE, "0.3050025"),
    ]
    assert job["lines"][1]["unit_prices"] == SONNET_LONG
    assert job["lines"][3]["unit_prices"] == PRO_LONG
    assert job["lines"][3]["input_tokens"] == 200_001

    # The invoice's lines keep them apart and name the rate of their unit prices.
    issued = await client.post("/v1/jobs/job-long/invoices")
    assert issued.status_code == 201, issued.text
    invoice = issued.json()
    assert [
        (x["model"], x["long_context_from"], x["rate"], x["amount_usd"]) for x in invoice["lines"]
    ] == [
        (SONNET, None, "base", "0.225"),
        (SONNET, 200_001, LONG_RATE, "0.442506"),
        (PRO, None, "base", "0.1575"),
        (PRO, 200_001, LONG_RATE, "0.3050025"),
    ]
    assert invoice["lines"][1]["unit_prices"] == SONNET_LONG
    assert (invoice["subtotal_usd"], invoice["total_usd"]) == ("1.1300085", "1.13")
    number = invoice["number"]
    assert (await get(client, f"/v1/invoices/{number}")) == invoice

    exported = await client.get(f"/v1/invoices/{number}", params={"format": "csv"})
    rows = [r for r in csv.DictReader(io.StringIO(exported.text)) if r["row_type"] == "line"]
    # One readable price per class the line has tokens of; a long-context line names its
    # rate first.
    assert [(r["model"], r["rate"], r["unit_prices"]) for r in rows] == [
        (
            SONNET,
            "base",
            "input 3.00 / 1M tokens; cache read 0.30 / 1M tokens; "
            "cache write 3.75 / 1M tokens; output 15.00 / 1M tokens",
        ),
        (
            SONNET,
            LONG_RATE,
            f"at the {LONG_RATE} rate; input 6.00 / 1M tokens; cache read 0.60 / 1M tokens; "
            "cache write 7.50 / 1M tokens; output 22.50 / 1M tokens",
        ),
        (
            PRO,
            "base",
            "input 1.25 / 1M tokens; cache read 0.125 / 1M tokens; output 10.00 / 1M tokens",
        ),
        (
            PRO,
            LONG_RATE,
            f"at the {LONG_RATE} rate; input 2.50 / 1M tokens; cache read 0.25 / 1M tokens; "
            "cache write 2.50 / 1M tokens; output 15.00 / 1M tokens; "
            "reasoning 15.00 / 1M tokens",
        ),
    ]
    # Every digit, as billed (the total alone is rounded)
    assert [r["amount_usd"] for r in rows] == ["0.225", "0.442506", "0.1575", "0.3050025"]
    page = await client.get(f"/v1/invoices/{number}", params={"format": "html"})
    assert page.text.count(f"{LONG_RATE} rate") == 2

    by_model = {
        r["model"]: r["cost_usd"]
        for r in (await get(client, "/v1/usage", group_by="model"))["rows"]
    }
    assert by_model == {SONNET: "0.667506", PRO: "0.4625025"}
    assert sum(Decimal(v) for v in by_model.values()) == Decimal(job["cost_usd"])
    await assert_rollups_equal_ledger(db)
