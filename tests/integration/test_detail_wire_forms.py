"""``GET /v1/agents/{agent}`` and ``GET /v1/jobs/{id}`` answer with the text PostgreSQL
writes (``rollups.queries.wire_totals``): each answer must be the one Python wrote before,
from the Decimals and datetimes of the same rollup and ledger rows (``Totals.from_row``,
summed day by day, ``totals_fields``), to the character.

The ledger: 1,200 calls over October 2026 by four agents on 37 jobs, some on a model no
catalog knows until a version brings it by an alias, which then re-rates them (reversals
and re-bookings: job lines and days whose figures change after the fact, a line left at
zero events). Agents over open ranges, UTC midnights (the rollup), ranges inside days
(the ledger), and one with no usage; every job, and one that has none.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import asyncpg

from service.api.schemas.common import totals_fields
from service.jobs.service import get_job
from service.money import exact_sum
from service.pricing.models import PRICE_CLASSES, rate_label
from service.rollups.models import MEASURES, Totals
from service.rollups.queries import TOTALS, measures_from_ledger
from service.wire import day_text, money_text
from tests.support.catalogs import mistral_arrives
from tests.support.events import MANY_CALLS_MODELS, many_calls, record_accepted

RANGES: list[dict[str, str]] = [
    {},
    {"from": "2026-10-05T00:00:00Z", "to": "2026-10-20T00:00:00Z"},
    {"from": "2026-10-05T02:00:00+02:00"},  # a UTC midnight too
    {"to": "2026-10-31T00:00:00Z"},
    {"from": "2026-10-05T06:30:00Z", "to": "2026-10-20T17:00:00.5Z"},  # inside days: ledger
    {"from": "2026-11-05T00:00:00Z"},  # no days: zero totals, no instants
]


def summed(parts: list[Totals]) -> Totals:
    """The totals of several days, as ``rollups.service.sum_totals`` added them."""

    def combine(name: str, combine: str, form: str) -> Any:
        values = [getattr(p, name) for p in parts]
        if combine == "sum":
            return exact_sum(v or Decimal(0) for v in values) if form == "money" else sum(values)
        known = [v for v in values if v is not None]
        return (min if combine == "min" else max)(known) if known else None

    return Totals(**{m.name: combine(m.name, m.combine, m.form) for m in MEASURES})


def midnight(value: datetime | None) -> date | None:
    """The UTC day of a UTC midnight (ValueError for any other instant): the rollup's."""
    if value is None:
        return None
    utc = value.astimezone(UTC)
    if utc.time() != time(0):
        raise ValueError("not a midnight")
    return utc.date()


async def agent_as_python_wrote_it(
    db: asyncpg.Connection, agent: str, params: dict[str, str]
) -> dict[str, Any] | None:
    if not await db.fetchval("SELECT 1 FROM rollup_agent_days WHERE agent = $1", agent):
        return None
    start, end = (
        datetime.fromisoformat(params[k]) if k in params else None for k in ("from", "to")
    )
    try:
        rows = await db.fetch(
            f"SELECT day, {TOTALS} FROM rollup_agent_days WHERE agent = $1"
            " AND ($2::date IS NULL OR day >= $2) AND ($3::date IS NULL OR day < $3)"
            " ORDER BY day",
            agent,
            midnight(start),
            midnight(end),
        )
    except ValueError:
        rows = await db.fetch(
            f"SELECT billing_day AS day, {measures_from_ledger()} FROM ledger_entries"
            " WHERE agent = $1 AND ($2::timestamptz IS NULL OR occurred_at >= $2)"
            " AND ($3::timestamptz IS NULL OR occurred_at < $3)"
            " GROUP BY billing_day ORDER BY billing_day",
            agent,
            start,
            end,
        )
    days = [(r["day"], Totals.from_row(r)) for r in rows if r["events"]]
    return {
        **totals_fields(summed([t for _, t in days])),
        "agent": agent,
        "days": [{**totals_fields(t), "day": day_text(day)} for day, t in days],
    }


async def job_as_python_wrote_it(db: asyncpg.Connection, job_id: str) -> dict[str, Any] | None:
    job = await db.fetchrow(f"SELECT {TOTALS} FROM rollup_jobs WHERE job_id = $1", job_id)
    if job is None:
        return None
    lines = await db.fetch(
        f"""
        SELECT l.agent, l.model, l.provider, l.catalog_version, l.long_context_from, p.tier,
               COALESCE(lc.input, p.input) AS input, COALESCE(lc.output, p.output) AS output,
               COALESCE(lc.cache_read, p.cache_read) AS cache_read,
               COALESCE(lc.cache_write, p.cache_write) AS cache_write,
               COALESCE(lc.reasoning, p.reasoning) AS reasoning, p.per_request,
               {", ".join(f"l.{m.name}" for m in MEASURES)}
        FROM rollup_job_lines AS l
        LEFT JOIN catalog_prices AS p ON p.version_id = l.catalog_version AND p.model_id = l.model
        LEFT JOIN catalog_long_context AS lc
               ON lc.version_id = l.catalog_version AND lc.model_id = l.model
              AND lc.min_input_tokens = l.long_context_from
        WHERE l.job_id = $1 AND l.events <> 0
        ORDER BY l.agent, l.model, l.provider, l.catalog_version NULLS LAST,
                 l.long_context_from NULLS FIRST
        """,
        job_id,
    )
    return {
        **totals_fields(Totals.from_row(job)),
        "job_id": job_id,
        "customer_id": (await get_job(db, job_id)).customer_id,
        "lines": [
            {
                **totals_fields(Totals.from_row(r)),
                **{k: r[k] for k in ("agent", "model", "provider", "catalog_version")},
                "long_context_from": r["long_context_from"],
                "rate": None
                if r["catalog_version"] is None
                else rate_label(r["long_context_from"]),
                "tier": r["tier"],
                "unit_prices": None
                if r["catalog_version"] is None
                else {k: money_text(r[k]) for k in PRICE_CLASSES},
            }
            for r in lines
        ],
    }


async def test_agent_and_job_answers_are_those_python_wrote(
    client: Any, db: asyncpg.Connection
) -> None:
    events = many_calls(1_200, models=(*MANY_CALLS_MODELS, "mistral-large"))
    for at in range(0, len(events), 400):
        await record_accepted(client, events[at : at + 400])
    version = await mistral_arrives(client, effective_from="2026-01-01T00:00:00Z")
    assert version["repriced_events"] > 100

    # A day whose entries hold no event (adjustments only) is no day of the series, nor of
    # the totals: written into the rollup by hand, as no October call leaves one.
    await db.execute(
        f"INSERT INTO rollup_agent_days (agent, day, {TOTALS}) SELECT 'ORACLE', '2026-11-10', "
        + ", ".join(
            {"money": "1.5", "count": "0", "instant": "'2026-11-10T01:00:00Z'"}[m.form]
            for m in MEASURES
        )
    )
    for agent in ("ACHEEVY", "Boomer_Ang", "ORACLE", "ByteRover", "nobody"):
        for params in RANGES:
            answer = await client.get(f"/v1/agents/{agent}", params=params)
            expected = await agent_as_python_wrote_it(db, agent, params)
            if expected is None:
                assert (agent, answer.status_code) == ("nobody", 404), answer.text
            else:
                assert answer.status_code == 200, answer.text
                assert answer.json() == expected, (agent, params)
    november = (await client.get("/v1/agents/ORACLE", params=RANGES[-1])).json()
    assert (november["days"], november["cost_usd"], november["first_event_at"]) == ([], "0", None)

    lines = 0
    for job_id in [*(f"job-{i}" for i in range(37)), "job-none"]:
        answer = await client.get(f"/v1/jobs/{job_id}")
        expected = await job_as_python_wrote_it(db, job_id)
        if expected is None:
            assert answer.status_code == 404, answer.text
        else:
            assert answer.status_code == 200, answer.text
            assert answer.json() == expected, job_id
            lines += len(expected["lines"])
    assert lines > 37 * 4
