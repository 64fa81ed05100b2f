"""Token sums never overflow (SPEC §2): no sequence of valid events makes a later one fail.

9,224 events at the old cap of 10^15 tokens pushed rollup_model_days.input_tokens to
bigint's maximum (2^63 − 1), and from then on every event of that model and day failed
with "bigint out of range", whoever sent it. Sending 9.2 million events at today's cap
(10^12) is out of reach of a test, so the sum is brought near the limit by one ledger
entry appended and rolled up through the service's own path (``record_adjustments``),
standing for those events; the events around it go through the API.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from service.ledger.models import NewLedgerEntry
from service.recording.rerating import record_adjustments
from tests.support.events import wire_event
from tests.support.ledger_truth import assert_rollups_equal_ledger

CAP = 10**12
BIGINT_MAX = 2**63 - 1
MODEL = "google/gemini-3.0-flash"  # $0.10 in / $0.40 out per 1M tokens
DAY = "2026-11-20"


def at_cap(event_id: str, job: str, agent: str) -> dict[str, Any]:
    """The most a valid event carries: 10^12 input tokens (all plain), 10^12 output.

    10^12 × $0.10/M + 10^12 × $0.40/M = $100,000 + $400,000 = $500,000.
    """
    return wire_event(
        event_id,
        occurred_at=f"{DAY}T10:00:00Z",
        job_id=job,
        agent=agent,
        model="gemini-3.0-flash",
        input_tokens=CAP,
        output_tokens=CAP,
    )


SEED_TOKENS = BIGINT_MAX - 2 * CAP
# At Flash's $0.10 per 1M input tokens: 9,223,370,036,854,775,807 × 0.10 / 10^6.
SEED_COST = Decimal("922337003685.4775807")


def standing_for_many_events() -> NewLedgerEntry:
    """One entry carrying ``SEED_TOKENS`` plain input tokens at Flash's prices, on the same
    model, day and job as the events."""
    return NewLedgerEntry(
        event_id="seed-many",
        kind="adjustment",
        job_id="job-big",
        agent="ORACLE",
        model=MODEL,
        provider="openrouter",
        tier="fast",
        catalog_version=1,
        long_context_from=None,
        occurred_at=datetime(2026, 11, 20, 9, tzinfo=UTC),
        billing_day=date(2026, 11, 20),
        input_tokens=SEED_TOKENS,
        cached_input_tokens=0,
        cache_write_tokens=0,
        output_tokens=0,
        reasoning_tokens=0,
        event_count=0,
        unpriced_count=0,
        cost_usd=SEED_COST,
        provider_cost_usd=None,
        price_usd=SEED_COST,  # no customer, no plan: the price is the cost
        price_input=Decimal("0.10"),
        price_output=Decimal("0.40"),
        price_cache_read=Decimal("0.01"),
        price_cache_write=Decimal("0.10"),
        price_reasoning=Decimal("0.40"),
        price_per_request=Decimal(0),
        reason="test: stands for 9.2 million events at the cap",
    )


async def test_events_at_the_cap_past_the_bigint_limit_are_all_recorded(
    client: Any, db: asyncpg.Connection
) -> None:
    first = await client.post(
        "/v1/events/batch",
        json={
            "events": [at_cap("big-1", "job-big", "ORACLE"), at_cap("big-2", "job-big", "ORACLE")]
        },
    )
    assert first.json()["accepted"] == 2, first.text
    # The model×day sum now sits exactly at bigint's maximum.
    async with db.transaction():
        await record_adjustments(db, [standing_for_many_events()])
    assert await db.fetchval(
        "SELECT input_tokens FROM rollup_model_days WHERE model = $1", MODEL
    ) == Decimal(BIGINT_MAX)

    # A later valid event of the same job, and one of another client on the same model and
    # day: both push every sum they touch past 2^63 − 1, and both are recorded.
    same_job = await client.post("/v1/events", json=at_cap("big-3", "job-big", "ORACLE"))
    assert same_job.status_code == 201, same_job.text
    other = await client.post("/v1/events", json=at_cap("other-1", "job-other", "ACHEEVY"))
    assert other.status_code == 201, other.text

    await assert_rollups_equal_ledger(db)
    # Integers on the wire, exact: 2^63 − 1 + 2 × 10^12 input tokens on the model that day.
    want_input = BIGINT_MAX + 2 * CAP
    by_model = (
        await client.get("/v1/usage", params={"group_by": "model,day", "from": f"{DAY}T00:00:00Z"})
    ).json()
    assert [
        (r["model"], r["day"], r["input_tokens"], r["output_tokens"]) for r in by_model["rows"]
    ] == [(MODEL, DAY, want_input, 4 * CAP)]
    job = (await client.get("/v1/jobs/job-big")).json()
    assert (job["input_tokens"], job["output_tokens"]) == (BIGINT_MAX + CAP, 3 * CAP)
    # 3 events at $500,000 each, and the standing entry.
    job_cost = Decimal(1_500_000) + SEED_COST
    assert (Decimal(job["cost_usd"]), job["events"]) == (job_cost, 3)

    # The invoice sums the same tokens in its line: past bigint too.
    invoice = await client.post("/v1/jobs/job-big/invoices")
    assert invoice.status_code == 201, invoice.text
    line = invoice.json()["lines"][0]
    assert (line["input_tokens"], Decimal(line["amount_usd"])) == (BIGINT_MAX + CAP, job_cost)
    assert invoice.json()["total_usd"] == "922338503685.48"
