"""SQL owned by the rollups (tables ``rollup_*``).

Each upsert reads the entries just appended (in the statement that appends them),
aggregates them per rollup key, and adds the sums. Rows are upserted
in key order, and the tables are always visited in the same order (one statement does
all six), so concurrent batches touching the same keys queue behind each other instead
of deadlocking. Every statement's measures come from ``rollups.models.MEASURES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from service.pricing.models import PRICE_CLASSES, RATE_MARKER, TOKEN_PRICES
from service.rollups.models import (
    MEASURE_NAMES,
    MEASURES,
    UNKNOWN_WHEN_NO_EVENT_KNOWS,
    Measure,
)
from service.wire import day_text_sql, instant_text_sql, money_text_sql


def _from_ledger(m: Measure, *, keep_unknown: bool) -> str:
    """``m`` aggregated over ledger entries."""
    if m.combine != "sum":
        return f"{m.combine}({m.source})"
    if m.form == "money" and not (keep_unknown and m.unknown_when_null):
        return f"COALESCE(sum({m.source}), 0)"  # money columns are NULL while unpriced
    return f"sum({m.source})"


def _combined(m: Measure) -> str:
    """A rollup row's ``m`` (``r``) with the entries of ``EXCLUDED`` added."""
    if m.combine == "sum" and m.unknown_when_null:
        # As sum() over all the entries would be: NULL only while neither side knows it
        # (an unpriced job line's actual cost is known for events that reported one).
        return f"{m.name} = COALESCE(r.{m.name} + EXCLUDED.{m.name}, r.{m.name}, EXCLUDED.{m.name})"
    if m.combine == "sum":
        return f"{m.name} = r.{m.name} + EXCLUDED.{m.name}"
    function = "LEAST" if m.combine == "min" else "GREATEST"
    return f"{m.name} = {function}(r.{m.name}, EXCLUDED.{m.name})"


def _of_entry(m: Measure, *, keep_unknown: bool) -> str:
    """``m`` over one ledger entry: what ``_from_ledger`` aggregates to over that entry (the
    min, max or sum of one value is that value)."""
    if m.combine == "sum" and m.form == "money" and not (keep_unknown and m.unknown_when_null):
        return f"COALESCE({m.source}, 0)"
    return m.source


@cache  # the same text every time: built once, not per usage query
def measures_from_ledger(*, keep_unknown: bool = False) -> str:
    """Every measure over a set of ledger entries, named as the rollups name it; with
    ``keep_unknown``, a cost no entry knows stays NULL (a job line of unpriced entries)."""
    return ",\n       ".join(
        f"{_from_ledger(m, keep_unknown=keep_unknown)} AS {m.name}" for m in MEASURES
    )


@cache
def measures_over_rollup() -> str:
    """Every measure over a set of rows of one rollup (several days of an agent, say)."""
    return ",\n       ".join(
        f"COALESCE(sum({m.name}), 0) AS {m.name}"
        if m.combine == "sum"
        else f"{m.combine}({m.name}) AS {m.name}"
        for m in MEASURES
    )


@cache
def measures_of_rollup_row() -> str:
    """Every measure of one rollup row, as ``measures_over_rollup`` gives it over that
    row alone: a query asking for a rollup's whole key reads its rows as they are, with
    no aggregation to pay for (a usage answer by agent and day: a third of its time)."""
    return ",\n       ".join(
        f"COALESCE({m.name}, 0) AS {m.name}" if m.combine == "sum" else f"{m.name}"
        for m in MEASURES
    )


# The measure columns of every rollup table, in one order.
TOTALS = ", ".join(MEASURE_NAMES)
_ADD = ",\n    ".join(_combined(m) for m in MEASURES)


@dataclass(frozen=True, slots=True)
class _Rollup:
    table: str
    keys: dict[str, str]
    """Key column → the ledger column it is taken from."""
    keep_unknown: bool = False
    """A job line's cost stays NULL while its entries are unpriced (its key holds no
    version, so it never mixes priced and unpriced entries)."""


# In the order every writer visits them.
_ROLLUPS = {
    "jobs": _Rollup("rollup_jobs", {"job_id": "job_id"}),
    "lines": _Rollup(
        "rollup_job_lines",
        # The rate (pricing.models.Rate) is part of the key: one unit price per line.
        {
            k: k
            for k in (
                "job_id",
                "agent",
                "model",
                "provider",
                "catalog_version",
                RATE_MARKER,
            )
        },
        keep_unknown=True,
    ),
    "usage": _Rollup("rollup_usage", {k: k for k in ("agent", "model", "provider", "tier")}),
    "agent_days": _Rollup("rollup_agent_days", {"agent": "agent", "day": "billing_day"}),
    "model_days": _Rollup("rollup_model_days", {"model": "model", "day": "billing_day"}),
    # By the customer the entries were priced for (NULL: jobs without one) and UTC month.
    "customer_months": _Rollup(
        "rollup_customer_months",
        {"customer_id": "customer_id", "month": "date_trunc('month', billing_day)::date"},
    ),
}


def rollup_key(table: str) -> frozenset[str]:
    """The columns that key a row of rollup ``table`` (one row per value of them)."""
    return next(frozenset(r.keys) for r in _ROLLUPS.values() if r.table == table)


def _upsert(rollup: _Rollup, source: str, *, one_entry: bool = False) -> str:
    keys = ", ".join(rollup.keys)
    sources = ", ".join(rollup.keys.values())
    if one_entry:
        measures = ",\n       ".join(
            f"{_of_entry(m, keep_unknown=rollup.keep_unknown)} AS {m.name}" for m in MEASURES
        )
        return f"""
INSERT INTO {rollup.table} AS r ({keys}, {TOTALS})
SELECT {sources}, {measures}
FROM {source}
ON CONFLICT ({keys}) DO UPDATE SET {_ADD}
"""
    return f"""
INSERT INTO {rollup.table} AS r ({keys}, {TOTALS})
SELECT {sources}, {measures_from_ledger(keep_unknown=rollup.keep_unknown)}
FROM {source}
GROUP BY {sources}
ORDER BY {sources}
ON CONFLICT ({keys}) DO UPDATE SET {_ADD}
"""


def upserts(source: str, *, one_entry: bool = False) -> dict[str, str]:
    """The six upserts, each adding the entries of ``source`` (a relation with the
    ledger's columns, optionally with a WHERE clause) to its rollup. ``one_entry``: the
    source holds at most one entry, whose measures are added as they are, without the
    grouping and sorting (a third of PostgreSQL's work on a lone event's statement)."""
    return {name: _upsert(rollup, source, one_entry=one_entry) for name, rollup in _ROLLUPS.items()}


def upserts_over(source: str, *, one_entry: bool = False) -> str:
    """The six upserts as common table expressions over ``source``, for the statement that
    appends the entries (one round trip, one plan prepared once per connection).

    PostgreSQL runs the data-modifying parts of a statement one after another, always in
    the same order for the same statement, so every writer visits the tables in one order.
    """
    return ",\n".join(
        f"rollup_{name} AS ({sql})" for name, sql in upserts(source, one_entry=one_entry).items()
    )


# Read side ---------------------------------------------------------------------------------
#
# The reads that answer the API (a job, an agent's days, a usage query) come back in their
# wire form, written by PostgreSQL (``service.wire``'s SQL forms): a usage answer holds
# hundreds of rows, and a Decimal and a datetime per value, made only to be turned back
# into text, cost more CPU than the rest of the request. Each query reads the measures as
# before; an outer SELECT writes them out (``wire_totals``).


def _read(m: Measure, column: str) -> str:
    """``column`` as ``Measure.read`` takes it: a NULL sum is zero unless it means unknown."""
    if m.form == "count" or (m.form == "money" and not m.unknown_when_null):
        return f"COALESCE({column}, 0)"
    return column


def _wire(m: Measure, column: str) -> str:
    if m.form == "money":
        return money_text_sql(_read(m, column))
    if m.form == "instant":
        return instant_text_sql(column)
    # As text: a token sum can pass bigint (migration 0007); read back as int
    # (``rollups.service.wire_rows``).
    return f"{_read(m, column)}::text"


@cache
def wire_totals(relation: str) -> str:
    """Every measure of ``relation`` (a row with a column per measure) in its wire form
    (``api.schemas.common.totals_fields``) and named as on the wire; counts as text
    (``COUNT_NAMES``)."""
    # Totals.unknown_measures, as SQL: when each measure is unknown (null on the wire).
    unknown = {
        name: f"{relation}.events > 0 AND {relation}.{count} = {relation}.events"
        for name, count in UNKNOWN_WHEN_NO_EVENT_KNOWS.items()
    }

    def unless_unknown(name: str, sql: str) -> str:
        return f"CASE WHEN {unknown[name]} THEN NULL ELSE {sql} END" if name in unknown else sql

    written = [unless_unknown(m.name, _wire(m, f"{relation}.{m.name}")) for m in MEASURES]
    return ",\n       ".join(
        f"{text} AS {m.name}" for text, m in zip(written, MEASURES, strict=True)
    )


COUNT_NAMES = tuple(m.name for m in MEASURES if m.form == "count")
"""The measures ``wire_totals`` writes as text that the wire holds as integers."""

# A line's unit prices are those of its rate: the long-context entry it names, else the
# model's base prices; per_request is always the model's.
_UNIT_PRICES = {
    **{name: f"COALESCE(lc.{name}, p.{name})" for name in TOKEN_PRICES},
    "per_request": "p.per_request",
}
assert tuple(_UNIT_PRICES) == PRICE_CLASSES

# A job's answer in one statement: first the job (``part`` 0: its totals, and its customer
# from its metadata, the ``jobs`` table of service.jobs), then its lines in order.
SELECT_JOB_DETAIL = f"""
SELECT 0 AS part, NULL::text AS agent, NULL::text AS model, NULL::text AS provider,
       NULL::bigint AS catalog_version, NULL::bigint AS long_context_from, NULL::text AS tier,
       {", ".join(f"NULL::text AS {name}" for name in PRICE_CLASSES)},
       (SELECT customer_id FROM jobs WHERE jobs.job_id = j.job_id) AS customer_id,
       {wire_totals("j")}
FROM rollup_jobs AS j
WHERE j.job_id = $1
UNION ALL
SELECT 1, l.agent, l.model, l.provider, l.catalog_version, l.long_context_from, p.tier,
       {", ".join(money_text_sql(sql) for sql in _UNIT_PRICES.values())},
       NULL,
       {wire_totals("l")}
FROM rollup_job_lines AS l
LEFT JOIN catalog_prices AS p ON p.version_id = l.catalog_version AND p.model_id = l.model
LEFT JOIN catalog_long_context AS lc
       ON lc.version_id = l.catalog_version AND lc.model_id = l.model
      AND lc.min_input_tokens = l.long_context_from
WHERE l.job_id = $1 AND l.events <> 0
ORDER BY part, agent, model, provider, catalog_version NULLS LAST, long_context_from NULLS FIRST
"""

# Keyset pagination on job_id; the filters keep jobs that had activity in [from, to) and,
# with an agent, jobs that agent worked on.
SELECT_JOBS = f"""
SELECT job_id, {TOTALS}
FROM rollup_jobs AS j
WHERE j.job_id > $1
  AND ($2::timestamptz IS NULL OR j.last_event_at >= $2)
  AND ($3::timestamptz IS NULL OR j.first_event_at < $3)
  -- The span test above is a cheap prefilter; a job whose events fall on both sides of
  -- the range but none inside it must not match, so look for an entry in the range (of
  -- the agent, when one is asked for: the filters hold of the same events).
  AND (($2::timestamptz IS NULL AND $3::timestamptz IS NULL) OR EXISTS (
        SELECT 1 FROM ledger_entries AS e
        WHERE e.job_id = j.job_id
          AND ($2::timestamptz IS NULL OR e.occurred_at >= $2)
          AND ($3::timestamptz IS NULL OR e.occurred_at < $3)
          AND ($4::text IS NULL OR e.agent = $4)))
  AND ($4::text IS NULL OR EXISTS (
        SELECT 1 FROM rollup_job_lines AS l
        WHERE l.agent = $4 AND l.job_id = j.job_id AND l.events <> 0))
ORDER BY job_id
LIMIT $5
"""

SELECT_AGENTS = f"""
SELECT agent, {measures_over_rollup()}
FROM rollup_agent_days
GROUP BY agent
ORDER BY agent
"""


def _agent_detail(days: str) -> str:
    """An agent's answer over ``days`` (its days, each with a column per measure) in one
    statement: first its totals over the days that hold events (``day`` NULL) and whether
    it has any usage at all (``known``), then those days in order, in wire form."""
    return f"""
WITH days AS (SELECT * FROM ({days}) AS d WHERE d.events <> 0)
SELECT EXISTS (SELECT 1 FROM rollup_agent_days WHERE agent = $1) AS known,
       NULL::date AS sort_day, NULL::text AS day, {wire_totals("t")}
FROM (SELECT {measures_over_rollup()} FROM days) AS t
UNION ALL
SELECT NULL, days.day, {day_text_sql("days.day")}, {wire_totals("days")}
FROM days
ORDER BY sort_day NULLS FIRST
"""


# On UTC midnights ($2 and $3 as dates, or NULL): the agent × day rollup.
SELECT_AGENT_DETAIL = _agent_detail(f"""
    SELECT day, {TOTALS}
    FROM rollup_agent_days
    WHERE agent = $1
      AND ($2::date IS NULL OR day >= $2)
      AND ($3::date IS NULL OR day < $3)""")

# Exact series for ranges that do not fall on UTC midnights: straight from the ledger.
SELECT_AGENT_DETAIL_FROM_LEDGER = _agent_detail(f"""
    SELECT billing_day AS day, {measures_from_ledger()}
    FROM ledger_entries
    WHERE agent = $1
      AND ($2::timestamptz IS NULL OR occurred_at >= $2)
      AND ($3::timestamptz IS NULL OR occurred_at < $3)
    GROUP BY billing_day""")

# Customers' totals in one UTC month ($2, its first day), from the customer × month rollup.
SELECT_CUSTOMER_MONTHS = f"""
SELECT customer_id, month, {TOTALS}
FROM rollup_customer_months
WHERE customer_id = ANY($1::text[]) AND month = $2
"""
