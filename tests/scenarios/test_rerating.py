"""Re-rating stories: prices arrive late, and prices are corrected after the fact.

(a) Events for a model the catalog lacks are kept unpriced; the version that adds the
model prices them at once, with a reversal and a re-booking per event.
(b) A version that corrects a price in the past changes nothing by itself; the re-rating
run (dry run first) moves each job and agent by exactly the hand-computed delta, and a
second run finds nothing left to do.

Version 1 is the AIMS catalog (effective 2025-01-01): Claude Sonnet 4.5 at $3 in / $15 out
per 1M tokens (cache read $0.30, cache write $3.75), Gemini 3.0 Flash at $0.10 / $0.40.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from service.catalog.service import load_catalog
from service.customers.plans import load_plans
from service.locks import LOCK_REPRICING_SHARED
from service.pricing.plans import Plans
from service.recording.bookings import job_bookings, plan_rerating
from service.recording.rerating import record_adjustments, rerate_since
from tests.support import catalogs
from tests.support.commands import luc_on
from tests.support.databases import connected
from tests.support.events import record_accepted, wire_event
from tests.support.ledger_truth import assert_rollups_equal_ledger


async def job(client: Any, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def entries(client: Any, job_id: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/jobs/{job_id}/entries")
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


MISTRAL = {**catalogs.MISTRAL, "cache_read": "0.05"}


async def test_unpriced_events_are_priced_when_a_version_brings_their_model(
    client: Any, db: asyncpg.Connection
) -> None:
    await record_accepted(
        client,
        [
            wire_event(
                "u1",
                occurred_at="2026-10-10T09:00:00Z",
                job_id="job-u",
                agent="ACHEEVY",
                model="mistralai/mistral-large-2512",
                input_tokens=30_000,
                output_tokens=2_000,
            ),
            # Sent by an alias that no version knows yet.
            wire_event(
                "u2",
                occurred_at="2026-10-11T09:00:00Z",
                job_id="job-u",
                agent="ByteRover",
                model="mistral-large",
                input_tokens=12_000,
                cached_input_tokens=4_000,
                output_tokens=1_500,
                reasoning_tokens=500,
            ),
            wire_event(
                "k1",
                occurred_at="2026-10-10T10:00:00Z",
                job_id="job-u",
                agent="ACHEEVY",
                model="gemini-3.0-flash",
                input_tokens=10_000,
                output_tokens=1_000,
            ),
        ],
    )
    unpriced = (await client.get("/v1/unpriced")).json()["items"]
    assert [(u["id"], u["model"]) for u in unpriced] == [
        ("u1", "mistralai/mistral-large-2512"),
        ("u2", "mistral-large"),
    ]
    before = await job(client, "job-u")
    # Only k1 is priced: 10,000 × 0.10 + 1,000 × 0.40 = 1,400 per 1M.
    assert Decimal(before["cost_usd"]) == Decimal("0.0014")
    assert before["unpriced_events"] == 2

    version = await catalogs.mistral_arrives(client, model=MISTRAL)
    assert version["repriced_events"] == 2

    assert (await client.get("/v1/unpriced")).json()["items"] == []
    after = await job(client, "job-u")
    # u1: 30,000 × 0.50 + 2,000 × 1.50 = 18,000 per 1M → 0.018
    # u2: 8,000 × 0.50 + 4,000 × 0.05 + 1,000 × 1.50 + 500 × 1.50 = 6,450 → 0.00645
    assert Decimal(after["cost_usd"]) == Decimal("0.0014") + Decimal("0.018") + Decimal("0.00645")
    assert after["unpriced_events"] == 0
    assert after["events"] == 3
    assert after["input_tokens"] == 52_000
    lines = {
        (line["agent"], line["model"], line["catalog_version"]): Decimal(line["cost_usd"])
        for line in after["lines"]
    }
    assert lines == {
        ("ACHEEVY", "google/gemini-3.0-flash", 1): Decimal("0.0014"),
        ("ACHEEVY", "mistralai/mistral-large-2512", version["id"]): Decimal("0.018"),
        ("ByteRover", "mistralai/mistral-large-2512", version["id"]): Decimal("0.00645"),
    }

    ledger = await entries(client, "job-u")
    for event_id, sent_model, cost in (
        ("u1", "mistralai/mistral-large-2512", "0.018"),
        ("u2", "mistral-large", "0.00645"),
    ):
        mine = [e for e in ledger if e["event_id"] == event_id]
        assert [
            (e["kind"], e["model"], e["catalog_version"], e["events"], e["unpriced_events"])
            for e in mine
        ] == [
            ("charge", sent_model, None, 1, 1),
            ("adjustment", sent_model, None, -1, -1),  # the reversal
            ("adjustment", "mistralai/mistral-large-2512", version["id"], 1, 0),
        ]
        assert [e["cost_usd"] for e in mine[:2]] == [None, None]
        assert Decimal(mine[2]["cost_usd"]) == Decimal(cost)
        assert mine[2]["unit_prices"]["input"] == "0.5"
        assert mine[2]["unit_prices"]["cache_read"] == "0.05"
    assert [e["kind"] for e in ledger if e["event_id"] == "k1"] == ["charge"]

    await assert_rollups_equal_ledger(db)


async def test_an_unknown_model_used_before_the_new_version_starts_stays_unpriced(
    client: Any, db: asyncpg.Connection
) -> None:
    tokens = {"input_tokens": 1_000, "output_tokens": 100}
    await record_accepted(
        client,
        [
            wire_event(
                "early",
                occurred_at="2026-08-15T00:00:00Z",
                job_id="job-e",
                agent="ORACLE",
                model=MISTRAL["id"],
                **tokens,
            ),
            wire_event(
                "late",
                occurred_at="2026-09-15T00:00:00Z",
                job_id="job-e",
                agent="ORACLE",
                model=MISTRAL["id"],
                **tokens,
            ),
        ],
    )

    response = await client.post(
        "/v1/catalog/versions",
        json={"effective_from": "2026-09-01T00:00:00Z", "parent": 1, "models": [MISTRAL]},
    )
    assert response.status_code == 201, response.text
    assert response.json()["repriced_events"] == 1

    unpriced = (await client.get("/v1/unpriced")).json()["items"]
    assert [u["id"] for u in unpriced] == ["early"]
    assert "not in catalog version 1" in unpriced[0]["reason"]
    # late: 1,000 × 0.50 + 100 × 1.50 = 650 per 1M
    assert Decimal((await job(client, "job-e"))["cost_usd"]) == Decimal("0.00065")
    await assert_rollups_equal_ledger(db)


async def test_an_unpriced_event_s_reason_names_the_version_in_force_now_not_at_booking(
    client: Any,
) -> None:
    # Booked under version 1; then version 2 (without the model) takes over at its instant.
    await record_accepted(
        client,
        [
            wire_event(
                "stale",
                occurred_at="2026-09-15T00:00:00Z",
                job_id="job-s",
                model=MISTRAL["id"],
                input_tokens=1_000,
                output_tokens=100,
            )
        ],
    )
    [before] = (await client.get("/v1/unpriced")).json()["items"]
    assert before["reason"] == f"model {MISTRAL['id']!r} is not in catalog version 1"
    response = await client.post(
        "/v1/catalog/versions",
        json={"effective_from": "2026-09-01T00:00:00Z", "parent": 1, "models": []},
    )
    assert response.status_code == 201, response.text
    version = response.json()["id"]
    # Adding the model to version 1 would price nothing now: the reason says which version
    # would have to hold it.
    [after] = (await client.get("/v1/unpriced")).json()["items"]
    assert after["reason"] == f"model {MISTRAL['id']!r} is not in catalog version {version}"


SONNET = "anthropic/claude-sonnet-4.5"
# The correction: the gateway writes to Anthropic's 1-hour cache, whose writes cost 2× input
# ($6.00 per 1M tokens; $12.00 at the long-context rate), not the 5-minute $3.75 that
# AIMS v1 gives. Everything else as in v1.
SONNET_CORRECTED = {
    "id": SONNET,
    "name": "Claude Sonnet 4.5",
    "tier": "standard",
    "input": "3",
    "output": "15",
    "cache_read": "0.30",
    "cache_write": "6.00",
    "context_tokens": 1000000,
    "long_context": [
        {
            "min_input_tokens": 200001,
            "input": "6",
            "output": "22.5",
            "cache_read": "0.6",
            "cache_write": "12",
        }
    ],
}
CORRECTION_EVENTS = [
    # Before the correction takes effect: v1 stays in force for it.
    # 100,000 × 3 + 10,000 × 15 = 450,000 per 1M → 0.45
    wire_event(
        "p0",
        occurred_at="2026-09-20T00:00:00Z",
        job_id="job-r1",
        agent="ACHEEVY",
        model=SONNET,
        input_tokens=100_000,
        output_tokens=10_000,
    ),
    # v1: 140,000 × 3 + 50,000 × 0.30 + 10,000 × 3.75 + 15,000 × 15 + 5,000 × 15
    #     = 420,000 + 15,000 + 37,500 + 225,000 + 75,000 = 772,500 per 1M → 0.7725
    # v2: the cache writes at 6.00: 60,000 instead of 37,500 → 795,000 → 0.795; Δ +0.0225
    wire_event(
        "r1",
        occurred_at="2026-10-02T10:00:00Z",
        job_id="job-r1",
        agent="ACHEEVY",
        model=SONNET,
        input_tokens=200_000,
        cached_input_tokens=50_000,
        cache_write_tokens=10_000,
        output_tokens=20_000,
        reasoning_tokens=5_000,
    ),
    # v1: 16,000 × 3 + 60,000 × 0.30 + 4,000 × 3.75 + 4,000 × 15
    #     = 48,000 + 18,000 + 15,000 + 60,000 = 141,000 → 0.141
    # v2: 4,000 × 6.00 = 24,000 instead of 15,000 → 150,000 → 0.15; Δ +0.009
    wire_event(
        "r2",
        occurred_at="2026-10-03T12:00:00Z",
        job_id="job-r2",
        agent="ORACLE",
        model=SONNET,
        input_tokens=80_000,
        cached_input_tokens=60_000,
        cache_write_tokens=4_000,
        output_tokens=4_000,
    ),
    # v1: 2,000 × 3 + 8,000 × 3.75 + 1,000 × 15 = 6,000 + 30,000 + 15,000 = 51,000 → 0.051
    # v2: 8,000 × 6.00 = 48,000 instead of 30,000 → 69,000 → 0.069; Δ +0.018
    wire_event(
        "r3",
        occurred_at="2026-10-04T08:00:00Z",
        job_id="job-r1",
        agent="ORACLE",
        model=SONNET,
        input_tokens=10_000,
        cache_write_tokens=8_000,
        output_tokens=1_000,
    ),
    # Gemini's price is the same in both versions: 50,000 × 0.10 + 5,000 × 0.40 → 0.007.
    # Its money does not change, so it keeps its booking under version 1.
    wire_event(
        "g1",
        occurred_at="2026-10-02T11:00:00Z",
        job_id="job-r2",
        agent="ACHEEVY",
        model="gemini-3.0-flash",
        input_tokens=50_000,
        output_tokens=5_000,
    ),
]
SINCE = "2026-09-01T00:00:00Z"
# Per job: r1 + r3 = 0.0225 + 0.018; r2 + g1 = 0.009 + 0. Per agent: ACHEEVY r1 + g1,
# ORACLE r2 + r3.
JOB_DELTAS = {"job-r1": (2, Decimal("0.0405")), "job-r2": (1, Decimal("0.009"))}
AGENT_DELTAS = {"ACHEEVY": (1, Decimal("0.0225")), "ORACLE": (2, Decimal("0.027"))}
TOTAL_DELTA = Decimal("0.0495")


def deltas(rows: list[dict[str, Any]]) -> dict[str, tuple[int, Decimal]]:
    return {row["key"]: (row["events"], Decimal(row["delta_usd"])) for row in rows}


async def test_a_retroactive_correction_is_applied_only_by_rerating_and_only_once(
    client: Any, db: asyncpg.Connection, database_url: str
) -> None:
    await record_accepted(client, CORRECTION_EVENTS)
    # p0 0.45 + r1 0.7725 + r3 0.051; r2 0.141 + g1 0.007
    assert Decimal((await job(client, "job-r1"))["cost_usd"]) == Decimal("1.2735")
    assert Decimal((await job(client, "job-r2"))["cost_usd"]) == Decimal("0.148")
    acheevy_before = Decimal((await client.get("/v1/agents/ACHEEVY")).json()["cost_usd"])
    oracle_before = Decimal((await client.get("/v1/agents/ORACLE")).json()["cost_usd"])
    # p0 + r1 + g1; r2 + r3
    assert (acheevy_before, oracle_before) == (Decimal("1.2295"), Decimal("0.192"))

    response = await client.post(
        "/v1/catalog/versions",
        json={
            "effective_from": "2026-10-01T00:00:00Z",
            "label": "sonnet 1-hour cache writes",
            "parent": 1,
            "models": [SONNET_CORRECTED],
        },
    )
    assert response.status_code == 201, response.text
    correction = response.json()["id"]

    # The version alone changes nothing already booked.
    rows = await db.fetchval("SELECT count(*) FROM ledger_entries")
    assert rows == 5
    assert Decimal((await job(client, "job-r1"))["cost_usd"]) == Decimal("1.2735")
    assert Decimal((await job(client, "job-r2"))["cost_usd"]) == Decimal("0.148")

    dry = await client.post("/v1/catalog/rerate", json={"since": SINCE, "dry_run": True})
    assert dry.status_code == 200, dry.text
    report = dry.json()
    assert report["dry_run"] is True
    assert report["events_examined"] == 5
    assert report["events_changed"] == 3
    assert report["entries_appended"] == 0
    assert Decimal(report["delta_usd"]) == TOTAL_DELTA
    assert deltas(report["jobs"]) == JOB_DELTAS
    assert deltas(report["agents"]) == AGENT_DELTAS
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == rows

    cli = await luc_on(database_url, "catalog", "rerate", "--since", SINCE, "--dry-run")
    assert cli.returncode == 0, cli.stderr
    summary = re.search(r"would change (\d+), total delta (\S+) USD; (\d+) entries", cli.stdout)
    assert summary is not None, cli.stdout
    assert (int(summary[1]), Decimal(summary[2]), int(summary[3])) == (3, TOTAL_DELTA, 0)
    # Written to a pipe, the summary stays one line, whatever width the environment says
    # (rich folded it at 80 columns, splitting amounts across lines of a log).
    narrow = await luc_on(
        database_url, "catalog", "rerate", "--since", SINCE, "--dry-run", COLUMNS="80"
    )
    first = narrow.stdout.splitlines()[0]
    assert first.startswith("5 events since") and first.endswith(" USD"), narrow.stdout
    assert len(first) > 80
    for key, (count, delta) in {**JOB_DELTAS, **AGENT_DELTAS}.items():
        line = re.search(rf"{key}\s*│\s*(\d+)\s*│\s*(\S+)", cli.stdout)
        assert line is not None, (key, cli.stdout)
        assert (int(line[1]), Decimal(line[2])) == (count, delta)
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == rows

    real = await client.post("/v1/catalog/rerate", json={"since": SINCE})
    assert real.status_code == 200, real.text
    applied = real.json()
    assert applied["dry_run"] is False
    assert applied["events_changed"] == 3
    assert applied["entries_appended"] == 6
    assert Decimal(applied["delta_usd"]) == TOTAL_DELTA
    assert deltas(applied["jobs"]) == JOB_DELTAS
    assert deltas(applied["agents"]) == AGENT_DELTAS
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == rows + 6

    # 1.2735 + 0.0405 = 0.45 + 0.795 + 0.069; 0.148 + 0.009 = 0.15 + 0.007
    assert Decimal((await job(client, "job-r1"))["cost_usd"]) == Decimal("1.314")
    assert Decimal((await job(client, "job-r2"))["cost_usd"]) == Decimal("0.157")
    acheevy = Decimal((await client.get("/v1/agents/ACHEEVY")).json()["cost_usd"])
    oracle = Decimal((await client.get("/v1/agents/ORACLE")).json()["cost_usd"])
    assert acheevy - acheevy_before == AGENT_DELTAS["ACHEEVY"][1]
    assert oracle - oracle_before == AGENT_DELTAS["ORACLE"][1]

    ledger = await entries(client, "job-r1") + await entries(client, "job-r2")
    booked = {
        "r1": (Decimal("0.7725"), Decimal("0.795")),
        "r2": (Decimal("0.141"), Decimal("0.15")),
        "r3": (Decimal("0.051"), Decimal("0.069")),
    }
    for event_id, (old, new) in booked.items():
        mine = [e for e in ledger if e["event_id"] == event_id]
        assert [(e["kind"], e["catalog_version"], e["events"]) for e in mine] == [
            ("charge", 1, 1),
            ("adjustment", 1, -1),
            ("adjustment", correction, 1),
        ], event_id
        assert [Decimal(e["cost_usd"]) for e in mine] == [old, -old, new], event_id
        assert mine[1]["reason"].startswith("reversal: ")
    for unchanged in ("p0", "g1"):
        assert [
            (e["kind"], e["catalog_version"]) for e in ledger if e["event_id"] == unchanged
        ] == [("charge", 1)], unchanged
    await assert_rollups_equal_ledger(db)

    again = await client.post("/v1/catalog/rerate", json={"since": SINCE})
    assert again.status_code == 200, again.text
    assert again.json()["events_examined"] == 5
    assert again.json()["events_changed"] == 0
    assert again.json()["entries_appended"] == 0
    assert Decimal(again.json()["delta_usd"]) == 0
    assert again.json()["jobs"] == [] and again.json()["agents"] == []
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == rows + 6
    assert Decimal((await job(client, "job-r1"))["cost_usd"]) == Decimal("1.314")


# Three earlier re-ratings, then a fourth, of Gemini 3.0 Flash (output 0.40 per 1M in every
# version): its input price goes 0.10 (version 1) → 0.20 → 0.15 → 0.12 → 0.30 from
# 2026-10-01 (versions 2 to 5). An event of N × 10,000 input and 1,000 output tokens costs
# N × 10,000 × input + 400 per 1M: N × 0.0012 + 0.0004 at 0.12, N × 0.003 + 0.0004 at 0.30.
FLASH_INPUT_PRICES = ("0.20", "0.15", "0.12", "0.30")
# Five Flash events and a Sonnet one share an instant, so that pages of two events end
# inside it; f7 and f8 come later. (event, job, N)
FLASH_EVENTS = (
    ("f1", "job-m1", 1),
    ("f2", "job-m1", 2),
    ("f3", "job-m2", 3),
    ("f4", "job-m1", 4),
    ("f5", "job-m2", 5),
    ("f7", "job-m2", 7),
    ("f8", "job-m1", 8),
)
SHARED_INSTANT = "2026-10-05T09:00:00Z"


def flash_event(event_id: str, job_id: str, n: int) -> dict[str, Any]:
    later = {"f7": "2026-10-05T09:00:01Z", "f8": "2026-10-06T00:00:00Z"}
    return wire_event(
        event_id,
        occurred_at=later.get(event_id, SHARED_INSTANT),
        job_id=job_id,
        agent="ACHEEVY",
        model="gemini-3.0-flash",
        input_tokens=n * 10_000,
        output_tokens=1_000,
    )


async def test_a_re_rating_after_three_earlier_ones_moves_each_event_from_its_live_booking(
    client: Any, db: asyncpg.Connection
) -> None:
    await record_accepted(
        client,
        [
            *(flash_event(*event) for event in FLASH_EVENTS),
            # 10,000 × 3 + 1,000 × 15 = 45,000 per 1M → 0.045, in every version.
            wire_event(
                "f6",
                occurred_at=SHARED_INSTANT,
                job_id="job-m2",
                agent="ORACLE",
                model=SONNET,
                input_tokens=10_000,
                output_tokens=1_000,
            ),
        ],
    )
    parent = 1
    for price in FLASH_INPUT_PRICES:
        created = await client.post(
            "/v1/catalog/versions",
            json={
                "effective_from": "2026-10-01T00:00:00Z",
                "label": f"flash input {price}",
                "parent": parent,
                "models": [
                    {
                        "id": "google/gemini-3.0-flash",
                        "name": "Gemini 3.0 Flash",
                        "tier": "fast",
                        "input": price,
                        "output": "0.40",
                    }
                ],
            },
        )
        assert created.status_code == 201, created.text
        parent = created.json()["id"]
        if price != FLASH_INPUT_PRICES[-1]:
            # The earlier re-ratings, each with the API's pages.
            done = await client.post("/v1/catalog/rerate", json={"since": "2026-10-01T00:00:00Z"})
            assert done.json()["events_changed"] == 7, done.text
    # Each Flash event: its charge and three pairs (reversal, re-booking); booked at 0.12.
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 8 + 7 * 6

    since = datetime(2026, 10, 1, tzinfo=UTC)
    # Pages of two events (most end inside the shared instant) and of three.
    for chunk in (2, 3):
        dry = await rerate_since(db, since, default_plan=None, dry_run=True, chunk=chunk)
        # Σ N = 30: 30 × (0.003 − 0.0012) = 0.054; job-m1 N = 1 + 2 + 4 + 8 = 15 → 0.027,
        # job-m2 N = 3 + 5 + 7 = 15 → 0.027.
        assert (dry.events_examined, dry.events_changed, dry.entries_appended) == (8, 7, 0)
        assert dry.delta_usd == Decimal("0.054")
        assert {j: (d.events, d.delta_usd) for j, d in dry.jobs.items()} == {
            "job-m1": (4, Decimal("0.027")),
            "job-m2": (3, Decimal("0.027")),
        }
    assert await db.fetchval("SELECT count(*) FROM ledger_entries") == 8 + 7 * 6

    done = await rerate_since(db, since, default_plan=None, dry_run=False, chunk=2)
    assert (done.events_examined, done.events_changed, done.entries_appended) == (8, 7, 14)
    assert done.delta_usd == Decimal("0.054")
    # 30 × 0.003 + 7 × 0.0004 = 0.0928 of Flash, and Sonnet's 0.045; per job: 15 × 0.003 +
    # 4 × 0.0004 = 0.0466, 15 × 0.003 + 3 × 0.0004 + 0.045 = 0.0912.
    assert Decimal((await job(client, "job-m1"))["cost_usd"]) == Decimal("0.0466")
    assert Decimal((await job(client, "job-m2"))["cost_usd"]) == Decimal("0.0912")
    ledger = await entries(client, "job-m1") + await entries(client, "job-m2")
    for event_id, _, n in FLASH_EVENTS:
        mine = [e for e in ledger if e["event_id"] == event_id]
        # The charge, then per re-rating a reversal on the booking's version and a
        # re-booking on the new one.
        assert [(e["kind"], e["events"], e["catalog_version"]) for e in mine] == [
            ("charge", 1, 1),
            *(
                entry
                for version in (2, 3, 4, 5)
                for entry in (("adjustment", -1, version - 1), ("adjustment", 1, version))
            ),
        ], event_id
        costs = [Decimal(e["cost_usd"]) for e in mine]
        assert costs[-1] == n * Decimal("0.003") + Decimal("0.0004"), event_id
        assert costs[-2] == -(n * Decimal("0.0012") + Decimal("0.0004")), event_id
    assert [e["kind"] for e in ledger if e["event_id"] == "f6"] == ["charge"]
    await assert_rollups_equal_ledger(db)

    again = await rerate_since(db, since, default_plan=None, dry_run=False, chunk=2)
    assert (again.events_examined, again.events_changed, again.entries_appended) == (8, 0, 0)


async def test_an_event_left_without_a_live_booking_does_not_end_the_pages_early(
    client: Any, db: asyncpg.Connection
) -> None:
    """Pages are cut by events: one event the ledger holds no live booking for (a breach
    of its rules that no API makes: here its booking's reversal appended alone) is left
    alone and logged, and the events after it are re-rated all the same."""
    await record_accepted(
        client,
        [
            wire_event(
                f"o{n}",
                occurred_at=f"2026-10-05T09:00:0{n}Z",
                job_id="job-o",
                agent="ACHEEVY",
                model="gemini-3.0-flash",
                input_tokens=10_000,
                output_tokens=1_000,
            )
            for n in range(1, 6)
        ],
    )
    created = await client.post(
        "/v1/catalog/versions",
        json={
            "effective_from": "2026-10-01T00:00:00Z",
            "label": "flash input 0.20",
            "parent": 1,
            "models": [
                {
                    "id": "google/gemini-3.0-flash",
                    "name": "Gemini 3.0 Flash",
                    "tier": "fast",
                    "input": "0.20",
                    "output": "0.40",
                }
            ],
        },
    )
    assert created.status_code == 201, created.text
    [o2] = [b for b in await job_bookings(db, ["job-o"]) if b.event.id == "o2"]
    plans = Plans(await load_plans(db), None)
    rerating = plan_rerating(o2, await load_catalog(db), plans, "a test breaking the rules")
    assert rerating is not None
    await record_adjustments(db, [rerating.entries[0]])  # the reversal alone

    since = datetime(2026, 10, 1, tzinfo=UTC)
    # Pages of two: (o1, o2) holds one booking, then (o3, o4), then (o5).
    done = await rerate_since(db, since, default_plan=None, dry_run=False, chunk=2)
    assert (done.events_examined, done.events_changed, done.entries_appended) == (5, 4, 8)
    # 10,000 × 0.20 + 1,000 × 0.40 = 2,400 per 1M, for o1, o3, o4 and o5 (o2 nets to 0).
    assert Decimal((await job(client, "job-o"))["cost_usd"]) == 4 * Decimal("0.0024")


async def test_a_dry_run_goes_on_beside_ingest_and_an_applied_run_waits_for_it(
    client: Any, db: asyncpg.Connection, database_url: str
) -> None:
    # A dry run took the re-pricing lock exclusively, chunk after chunk: every batch waited
    # for it (seconds per batch on a large ledger) though it writes nothing.
    await record_accepted(client, [wire_event("d1", occurred_at="2026-10-10T09:00:00Z")])
    async with connected(database_url) as ingest:
        # An ingest transaction in flight holds the lock shared.
        async with ingest.transaction():
            await ingest.execute(LOCK_REPRICING_SHARED)
            dry = await asyncio.wait_for(
                rerate_since(db, datetime(2026, 1, 1, tzinfo=UTC), default_plan=None, dry_run=True),
                timeout=20,
            )
            assert (dry.dry_run, dry.events_examined, dry.entries_appended) == (True, 1, 0)
            # An applied run still runs alone: it waits for the batch in flight.
            applied = asyncio.ensure_future(
                rerate_since(db, datetime(2026, 1, 1, tzinfo=UTC), default_plan=None, dry_run=False)
            )
            await asyncio.sleep(0.5)
            assert not applied.done()
        assert (await asyncio.wait_for(applied, timeout=20)).dry_run is False
