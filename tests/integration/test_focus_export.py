"""``GET /v1/exports/focus`` and ``luc export focus``: the ledger as FinOps FOCUS 1.2 CSV.

The story runs on a catalog of its own (effective 2026-06-01, so the AIMS prices play no
part), USD per 1M tokens: vendor/alpha 2 in / 10 out, vendor/beta 0.50 / 1.50;
vendor/gamma is unknown at first.

Job A is agent ACHEEVY's, job B agent ORACLE's; "—": no cost reported.

    event  when (UTC)                  job  model  provider    in/out          catalog   reported
    e1     2026-06-30 23:59:59         A    alpha  openrouter  100,000/10,000  0.3       —
    e2     2026-07-01 00:00:00         A    alpha  openrouter  100,000/10,000  0.3       0.29
    e3     2026-07-01 23:59:59.999999  A    alpha  openrouter   50,000/2,000   0.12      —
    e4     2026-07-02 00:00:00         A    alpha  openrouter   10,000/1,000   0.03      —
    e5     2026-07-02 12:00:00         B    beta   vertex       40,000/4,000   0.026     0.0259
    e6     2026-07-02 13:00:00         B    gamma  openrouter   10,000/1,000   unpriced  0.0123
    e7     2026-07-02 14:00:00         B    gamma  openrouter    5,000/500     unpriced  —
    e8     2026-07-03 00:00:00         A    alpha  openrouter  100,000/10,000  0.3       —

The actual cost is the reported one where there is one, else the catalog's; e7 has none.
e2: 100,000 × 2 + 10,000 × 10 = 300,000 per 1M = 0.3; e3: 100,000 + 20,000 = 0.12;
e4: 20,000 + 10,000 = 0.03; e5: 40,000 × 0.5 + 4,000 × 1.5 = 0.026.

July 1st and 2nd ([2026-07-01, 2026-07-03)) leave e1 and e8 out, one second or less on
either side; their actual cost is 0.29 + 0.12 + 0.03 + 0.0259 + 0.0123 = 0.4782.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest

from service.db import snapshot
from service.exports.models import ExportRange
from service.exports.service import focus_csv
from service.wire import parse_instant
from tests.support.catalogs import ALPHA, BETA, CATALOG, CORRECTION, EFFECTIVE, GAMMA
from tests.support.databases import connected
from tests.support.events import record_accepted, wire_event
from tests.support.paths import PROJECT_ROOT
from tests.support.waiting import wait_until

D = Decimal


def call(event_id: str, when: str, job: str, tokens: tuple[int, int], **more: Any) -> Any:
    fields = {"agent": "ACHEEVY", "model": ALPHA, "provider": "openrouter", **more}
    return wire_event(
        event_id,
        occurred_at=when,
        job_id=job,
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        **fields,
    )


ORACLE = {"agent": "ORACLE"}
EVENTS = [
    call("e1", "2026-06-30T23:59:59Z", "job-A", (100_000, 10_000)),
    call("e2", "2026-07-01T00:00:00Z", "job-A", (100_000, 10_000), provider_cost_usd="0.29"),
    call("e3", "2026-07-01T23:59:59.999999Z", "job-A", (50_000, 2_000)),
    call("e4", "2026-07-02T00:00:00Z", "job-A", (10_000, 1_000)),
    call(
        "e5",
        "2026-07-02T12:00:00Z",
        "job-B",
        (40_000, 4_000),
        model=BETA,
        provider="vertex",
        provider_cost_usd="0.0259",
        **ORACLE,
    ),
    call(
        "e6",
        "2026-07-02T13:00:00Z",
        "job-B",
        (10_000, 1_000),
        model=GAMMA,
        provider_cost_usd="0.0123",
        **ORACLE,
    ),
    call("e7", "2026-07-02T14:00:00Z", "job-B", (5_000, 500), model=GAMMA, **ORACLE),
    call("e8", "2026-07-03T00:00:00Z", "job-A", (100_000, 10_000)),
]
JULY_1_2 = {"from": "2026-07-01T00:00:00Z", "to": "2026-07-03T00:00:00Z"}

# FOCUS 1.2, "Columns" (specification/columns/*.md at tag v1.2 of
# github.com/FinOps-Open-Cost-and-Usage-Spec/FOCUS_Spec): every column whose Content
# Constraints say "Feature level: Mandatory".
FOCUS_1_2_MANDATORY = [
    "BilledCost",
    "BillingAccountId",
    "BillingAccountName",
    "BillingCurrency",
    "BillingPeriodEnd",
    "BillingPeriodStart",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargePeriodEnd",
    "ChargePeriodStart",
    "ContractedCost",
    "EffectiveCost",
    "InvoiceIssuerName",
    "ListCost",
    "PricingQuantity",
    "PricingUnit",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceName",
]
# The recommended and conditional FOCUS 1.2 columns whose condition holds for LUC:
# ChargeFrequency, InvoiceId and ServiceSubcategory (Recommended: "SHOULD be present";
# InvoiceId is null, LUC knows no provider's invoice), ConsumedQuantity and ConsumedUnit
# ("when the provider supports the measurement of usage"), SkuId ("when the provider ...
# publishes price lists").
FOCUS_1_2_APPLICABLE = [
    "ChargeFrequency",
    "ConsumedQuantity",
    "ConsumedUnit",
    "InvoiceId",
    "ServiceSubcategory",
    "SkuId",
]
# LUC's own, after every FOCUS column, with FOCUS's x_ prefix for custom columns.
LUC_COLUMNS = [
    "x_JobId",
    "x_Agent",
    "x_Model",
    "x_Provider",
    "x_CatalogVersions",
    "x_Events",
    "x_UnpricedEvents",
    "x_InputTokens",
    "x_CachedInputTokens",
    "x_CacheWriteTokens",
    "x_OutputTokens",
    "x_ReasoningTokens",
    "x_ProviderReportedCost",
]


async def start(client: Any) -> int:
    """The catalog and the events; the id of the catalog version."""
    response = await client.post("/v1/catalog/versions", json=CATALOG)
    assert response.status_code == 201, response.text
    await record_accepted(client, EVENTS)
    return int(response.json()["id"])


async def export(client: Any, **params: str) -> tuple[list[str], list[dict[str, str]], str]:
    """(header, rows, body) of an export."""
    response = await client.get("/v1/exports/focus", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    reader = csv.DictReader(io.StringIO(response.text, newline=""))
    rows = list(reader)
    return list(reader.fieldnames or []), rows, response.text


def key(row: dict[str, str]) -> tuple[str, ...]:
    return (row["ChargePeriodStart"][:10], row["x_JobId"], row["x_Model"], row["x_Provider"])


def billed_total(rows: list[dict[str, str]]) -> Decimal:
    return sum((D(r["BilledCost"]) for r in rows), D(0))


async def test_header_is_every_mandatory_focus_1_2_column_then_luc_columns(client: Any) -> None:
    await start(client)
    header, _, body = await export(client, **JULY_1_2)
    assert header == sorted(FOCUS_1_2_MANDATORY + FOCUS_1_2_APPLICABLE) + LUC_COLUMNS
    assert set(FOCUS_1_2_MANDATORY) <= set(header)
    assert body.startswith(",".join(header) + "\r\n")  # RFC 4180 line ends


async def test_billed_cost_sums_to_the_actual_cost_of_the_range_day_by_day(client: Any) -> None:
    version = await start(client)
    _, rows, _ = await export(client, **JULY_1_2)

    # 0.29 + 0.12 + 0.03 + 0.0259 + 0.0123: e1 a second before the range and e8 at its
    # exclusive end are out, e2 at its start and e3 a microsecond before midnight are in.
    assert billed_total(rows) == D("0.4782")
    usage = await client.get("/v1/usage", params=JULY_1_2)
    assert D(usage.json()["rows"][0]["actual_cost_usd"]) == D("0.4782")

    by_key = {key(r): r for r in rows}
    assert list(by_key) == [
        ("2026-07-01", "job-A", ALPHA, "openrouter"),
        ("2026-07-02", "job-A", ALPHA, "openrouter"),
        ("2026-07-02", "job-B", BETA, "vertex"),
        ("2026-07-02", "job-B", GAMMA, "openrouter"),
    ]
    day1 = by_key[("2026-07-01", "job-A", ALPHA, "openrouter")]
    # e2 + e3: billed 0.29 (reported) + 0.12, listed 0.3 + 0.12; 150,000 + 12,000 tokens
    assert {k: v for k, v in day1.items() if not k.startswith("x_")} == {
        "BilledCost": "0.41",
        "BillingAccountId": "openrouter",
        "BillingAccountName": "",
        "BillingCurrency": "USD",
        "BillingPeriodEnd": "2026-08-01T00:00:00Z",
        "BillingPeriodStart": "2026-07-01T00:00:00Z",
        "ChargeCategory": "Usage",
        "ChargeClass": "",
        "ChargeDescription": (
            "LLM tokens of vendor/alpha through OpenRouter for job job-A, agent ACHEEVY"
        ),
        "ChargeFrequency": "Usage-Based",
        "ChargePeriodEnd": "2026-07-02T00:00:00Z",
        "ChargePeriodStart": "2026-07-01T00:00:00Z",
        "ConsumedQuantity": "162000",
        "ConsumedUnit": "Tokens",
        "ContractedCost": "0.42",
        "EffectiveCost": "0.41",
        "InvoiceId": "",
        "InvoiceIssuerName": "OpenRouter",
        "ListCost": "0.42",
        "PricingQuantity": "0.162",
        "PricingUnit": "1000000 Tokens",
        "ProviderName": "OpenRouter",
        "PublisherName": "vendor",
        "ServiceCategory": "AI and Machine Learning",
        "ServiceName": "OpenRouter",
        "ServiceSubcategory": "Generative AI",
        "SkuId": ALPHA,
    }
    assert {k: v for k, v in day1.items() if k.startswith("x_")} == {
        "x_JobId": "job-A",
        "x_Agent": "ACHEEVY",
        "x_Model": ALPHA,
        "x_Provider": "openrouter",
        "x_CatalogVersions": str(version),
        "x_Events": "2",
        "x_UnpricedEvents": "0",
        "x_InputTokens": "150000",
        "x_CachedInputTokens": "0",
        "x_CacheWriteTokens": "0",
        "x_OutputTokens": "12000",
        "x_ReasoningTokens": "0",
        "x_ProviderReportedCost": "0.29",
    }
    # e4 alone, at midnight: the 2nd's row; nothing reported, so no provider figure (null)
    day2 = by_key[("2026-07-02", "job-A", ALPHA, "openrouter")]
    assert (day2["BilledCost"], day2["ListCost"], day2["ConsumedQuantity"]) == (
        "0.03",
        "0.03",
        "11000",
    )
    assert (day2["ChargePeriodStart"], day2["ChargePeriodEnd"]) == (
        "2026-07-02T00:00:00Z",
        "2026-07-03T00:00:00Z",
    )
    assert day2["x_ProviderReportedCost"] == ""
    vertex = by_key[("2026-07-02", "job-B", BETA, "vertex")]
    assert [vertex[c] for c in ("BilledCost", "ListCost", "ProviderName", "ServiceName")] == [
        "0.0259",
        "0.026",
        "Google Cloud",
        "Vertex AI",
    ]
    assert vertex["InvoiceIssuerName"] == "Google Cloud"
    # e6 and e7, which no catalog version prices: kept, counted, never a silent zero. The
    # actual cost is e6's reported 0.0123 (e7 has none); the catalog cost of neither is known.
    gamma = by_key[("2026-07-02", "job-B", GAMMA, "openrouter")]
    assert [
        gamma[c]
        for c in (
            "BilledCost",
            "ListCost",
            "x_UnpricedEvents",
            "x_Events",
            "x_CatalogVersions",
            "ConsumedQuantity",
            "PricingQuantity",
        )
    ] == ["0.0123", "0", "2", "2", "", "16500", "0.0165"]


async def test_a_range_inside_days_cuts_the_charge_period_to_it(client: Any) -> None:
    await start(client)
    _, rows, _ = await export(
        client, **{"from": "2026-07-01T12:00:00Z", "to": "2026-07-02T12:00:00Z"}
    )
    # e3 (23:59:59.999999 on the 1st) and e4 (midnight); e5 at noon on the 2nd is at the end
    assert [(r["ChargePeriodStart"], r["ChargePeriodEnd"], r["BilledCost"]) for r in rows] == [
        ("2026-07-01T12:00:00Z", "2026-07-02T00:00:00Z", "0.12"),
        ("2026-07-02T00:00:00Z", "2026-07-02T12:00:00Z", "0.03"),
    ]


async def test_a_range_across_months_names_each_rows_billing_month(client: Any) -> None:
    await start(client)
    _, rows, _ = await export(
        client, **{"from": "2026-06-30T00:00:00Z", "to": "2026-07-04T00:00:00+00:00"}
    )
    june = ("2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z")
    july = ("2026-07-01T00:00:00Z", "2026-08-01T00:00:00Z")
    assert [
        (r["ChargePeriodStart"][:10], (r["BillingPeriodStart"], r["BillingPeriodEnd"]))
        for r in rows
    ] == [
        ("2026-06-30", june),
        ("2026-07-01", july),
        ("2026-07-02", july),
        ("2026-07-02", july),
        ("2026-07-02", july),
        ("2026-07-03", july),
    ]
    # every event: e1 0.3 and e8 0.3 beside July 1st and 2nd
    assert billed_total(rows) == D("0.4782") + D("0.3") + D("0.3")


async def test_re_rating_restates_the_day_of_the_event_net_of_adjustments(client: Any) -> None:
    first = await start(client)
    response = await client.post("/v1/catalog/versions", json=CORRECTION)
    assert response.status_code == 201, response.text  # prices e6 and e7 at once
    second = int(response.json()["id"])
    rerate = await client.post("/v1/catalog/rerate", json={"since": EFFECTIVE})
    assert rerate.status_code == 200, rerate.text  # moves alpha: e1 to e4, e8

    _, rows, _ = await export(client, **JULY_1_2)
    by_key = {key(r): r for r in rows}
    assert len(rows) == 4  # the reversals add no row: each nets out within its day
    costs = {k: (r["BilledCost"], r["ListCost"], r["x_CatalogVersions"]) for k, r in by_key.items()}
    assert costs == {
        # e2 listed 100,000 × 3 + 100,000 = 0.4, billed its reported 0.29;
        # e3 150,000 + 20,000 = 0.17, billed the same (nothing reported)
        ("2026-07-01", "job-A", ALPHA, "openrouter"): ("0.46", "0.57", str(second)),
        # e4 30,000 + 10,000 = 0.04
        ("2026-07-02", "job-A", ALPHA, "openrouter"): ("0.04", "0.04", str(second)),
        # beta's price stands: still the first version's
        ("2026-07-02", "job-B", BETA, "vertex"): ("0.0259", "0.026", str(first)),
        # e6 10,000 + 2,000 = 0.012 (billed its reported 0.0123), e7 5,000 + 1,000 = 0.006
        ("2026-07-02", "job-B", GAMMA, "openrouter"): ("0.0183", "0.018", str(second)),
    }
    assert by_key[("2026-07-02", "job-B", GAMMA, "openrouter")]["x_UnpricedEvents"] == "0"
    assert billed_total(rows) == D("0.46") + D("0.04") + D("0.0259") + D("0.0183")
    usage = await client.get("/v1/usage", params=JULY_1_2)
    assert D(usage.json()["rows"][0]["actual_cost_usd"]) == billed_total(rows)


async def test_an_empty_range_is_the_header_alone(client: Any) -> None:
    await start(client)
    header, rows, body = await export(
        client, **{"from": "2025-01-01T00:00:00Z", "to": "2025-02-01T00:00:00Z"}
    )
    assert (rows, body) == ([], ",".join(header) + "\r\n")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"to": "2026-07-03T00:00:00Z"}, "from is required"),
        ({"from": "2026-07-01T00:00:00Z"}, "to is required"),
        (
            {"from": "2026-07-01", "to": "2026-07-03T00:00:00Z"},
            "from: '2026-07-01' is not an RFC 3339",
        ),
        (
            {"from": "2026-07-01T00:00:00", "to": "2026-07-03T00:00:00Z"},
            "from: timestamp has no UTC offset",
        ),
        (
            {"from": "2026-07-01T00:00:00.5Z", "to": "2026-07-03T00:00:00Z"},
            "from: 2026-07-01T00:00:00.500000Z has a fraction of a second",
        ),
        (
            {"from": "2026-07-03T00:00:00Z", "to": "2026-07-03T00:00:00Z"},
            "to (2026-07-03T00:00:00Z) must be after from (2026-07-03T00:00:00Z)",
        ),
        (
            {"from": "2026-01-01T00:00:00Z", "to": "2027-01-02T00:00:01Z"},
            "from 2026-01-01T00:00:00Z to 2027-01-02T00:00:01Z is longer than 366 days",
        ),
    ],
)
async def test_a_bad_range_is_refused_with_what_is_wrong(
    client: Any, params: dict[str, str], message: str
) -> None:
    response = await client.get("/v1/exports/focus", params=params)
    assert response.status_code == 400, response.text
    assert message in response.json()["detail"], response.text


async def test_a_whole_leap_year_is_one_export(client: Any) -> None:
    response = await client.get(
        "/v1/exports/focus", params={"from": "2028-01-01T00:00:00Z", "to": "2029-01-01T00:00:00Z"}
    )
    assert response.status_code == 200, response.text


async def test_the_last_month_a_timestamp_holds_is_exported_whole(client: Any) -> None:
    # December 9999 has no next month a datetime can hold: the export's cut at month starts
    # raised on it after the header was sent, and the client got a truncated file.
    await start(client)
    header, rows, body = await export(
        client, **{"from": "9999-12-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"}
    )
    assert (rows, body) == ([], ",".join(header) + "\r\n")


async def test_times_before_the_year_1000_keep_four_year_digits(client: Any) -> None:
    # strftime's %Y writes the year 500 as "500" on Linux: the times were not FOCUS's
    # YYYY-MM-DDTHH:mm:ssZ, nor the file name's stamp.
    await start(client)
    await record_accepted(client, [call("old", "0500-06-01T12:00:00Z", "job-old", (1_000, 0))])
    response = await client.get(
        "/v1/exports/focus", params={"from": "0500-06-01T00:00:00Z", "to": "0500-07-01T00:00:00Z"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == (
        'attachment; filename="luc-focus-05000601T000000Z-05000701T000000Z.csv"'
    )
    (row,) = csv.DictReader(io.StringIO(response.text, newline=""))
    assert {k: v for k, v in row.items() if k.endswith(("PeriodStart", "PeriodEnd"))} == {
        "BillingPeriodEnd": "0500-07-01T00:00:00Z",
        "BillingPeriodStart": "0500-06-01T00:00:00Z",
        "ChargePeriodEnd": "0500-06-02T00:00:00Z",
        "ChargePeriodStart": "0500-06-01T00:00:00Z",
    }


async def test_rows_arrive_a_fetch_at_a_time_while_the_query_is_still_open(
    client: Any, database_url: str, db: asyncpg.Connection
) -> None:
    await start(client)
    span = ExportRange(parse_instant("from", JULY_1_2["from"]), parse_instant("to", JULY_1_2["to"]))
    async with connected(database_url) as conn, snapshot(conn):
        chunks = focus_csv(conn, span, fetch_rows=1)
        header = await anext(chunks)
        first = await anext(chunks)
        # One row read of four, and the export's cursor still open in its transaction:
        # the rest is still in PostgreSQL, not in this process.
        assert header.count("\r\n") == 1 and first.count("\r\n") == 1
        assert first.startswith("0.41,")
        state = await db.fetchval(
            "SELECT state FROM pg_stat_activity WHERE pid = $1", conn.get_server_pid()
        )
        assert state == "idle in transaction"
        rest = [chunk async for chunk in chunks]
    assert [chunk.count("\r\n") for chunk in rest] == [1, 1, 1]


def luc_bytes(database_url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``luc ARGS`` with stdout kept as bytes (text mode would turn CRLF into LF)."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("LUC_")}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={**inherited, "LUC_DATABASE_URL": database_url},
        cwd=PROJECT_ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )


async def test_the_command_line_writes_the_endpoints_file(client: Any, database_url: str) -> None:
    await start(client)
    params = {"from": "2026-06-30T06:00:00Z", "to": "2026-07-03T00:00:01Z"}
    response = await client.get("/v1/exports/focus", params=params)
    assert response.status_code == 200, response.text

    result = await asyncio.to_thread(
        luc_bytes, database_url, "export", "focus", "--from", params["from"], "--to", params["to"]
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == response.content
    # e1 0.3 + 0.4782 + e8 0.3; the progress label and this summary on stderr
    assert "6 rows, BilledCost 1.0782 USD in total" in result.stderr.decode()

    refused = await asyncio.to_thread(
        luc_bytes, database_url, "export", "focus", "--from", params["to"], "--to", params["from"]
    )
    assert refused.returncode == 2  # a usage mistake, as README says
    assert refused.stdout == b""
    assert b"must be after from" in refused.stderr


# Enough rows that the file (about 20 MB) cannot all wait in socket buffers: a server that
# built the file before sending it would be done with PostgreSQL by the first byte.
MANY_JOBS = 40_000


@pytest.mark.slow
async def test_a_large_export_streams_from_the_open_query_and_ends_with_its_client(
    server_factory: Any, db: asyncpg.Connection
) -> None:
    # A pool of 4: one export at a time (a quarter of the pool).
    server = server_factory(LUC_DB_POOL_MAX="4")
    async with httpx.AsyncClient(base_url=server.base_url, timeout=60) as http:
        response = await http.post("/v1/catalog/versions", json=CATALOG)
        assert response.status_code == 201, response.text
        for first in range(0, MANY_JOBS, 5000):
            batch = [
                call(f"m{n}", "2026-07-01T10:00:00Z", f"job-{n:05}", (1_000, 100))
                for n in range(first, first + 5000)
            ]
            await record_accepted(http, batch)

        async def exporting() -> list[Any]:
            return list(
                await db.fetch(
                    "SELECT pid, state FROM pg_stat_activity "
                    "WHERE query LIKE '%per_version%' AND xact_start IS NOT NULL "
                    "AND pid <> pg_backend_pid()"
                )
            )

        async with http.stream("GET", "/v1/exports/focus", params=JULY_1_2) as streamed:
            assert streamed.status_code == 200
            assert streamed.headers["transfer-encoding"] == "chunked"
            assert "content-length" not in streamed.headers
            chunks = streamed.aiter_bytes()
            received = await anext(chunks)
            assert received.startswith(b"BilledCost,")
            while len(received) < 1_000_000:  # past the header: rows of the first fetches
                received += await anext(chunks)
            # Rows are here, and the export's query is still open on the server.
            assert len(await exporting()) == 1
            # Meanwhile a second export waits its turn, and the other reads go on.
            second = await http.get("/v1/exports/focus", params=JULY_1_2)
            assert second.status_code == 429, second.text
            assert second.headers["retry-after"] == "5"
            assert second.json()["detail"].startswith(
                "this server is sending as many exports as it sends at once (1: each holds"
            )
            assert (await http.get("/v1/usage", params=JULY_1_2)).status_code == 200
        # The client went away mid-file: the server stops, its snapshot ends, and the
        # connection goes back to the pool.
        assert await wait_until(
            lambda: exporting_none(exporting), 30, "the export's transaction to end"
        )

        # PostgreSQL lost mid-file: the 200 is sent already, so the response is cut off
        # without its last chunk, and the client cannot take the part for the whole file.
        with pytest.raises(httpx.RemoteProtocolError):
            async with http.stream("GET", "/v1/exports/focus", params=JULY_1_2) as streamed:
                chunks = streamed.aiter_bytes()
                received = b""
                while len(received) < 1_000_000:
                    received += await anext(chunks)
                (export,) = await exporting()
                assert await db.fetchval("SELECT pg_terminate_backend($1)", export["pid"])
                async for _ in chunks:
                    pass


async def exporting_none(exporting: Any) -> bool:
    return not await exporting()
