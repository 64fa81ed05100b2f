"""SQL owned by the rollups (tables ``rollup_*``).

Each upsert reads the entries just appended (in the statement that appends them),
aggregates them per rollup key, and adds the sums. Rows are upserted
in key order, and the tables are always visited in the same order (one statement does
all six), so concurrent batches touching the same keys queue behind each other instead
of deadlocking. Every statement's measures come from ``rollups.models.MEASURES``.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.pricing.models import RATE_MARKER
from service.rollups.models import MEASURE_NAMES, MEASURES, Measure


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


def measures_from_ledger(*, keep_unknown: bool = False) -> str:
    """Every measure over a set of ledger entries, named as the rollups name it; with
    ``keep_unknown``, a cost no entry knows stays NULL (a job line of unpriced entries)."""
    return ",\n       ".join(
        f"{_from_ledger(m, keep_unknown=keep_unknown)} AS {m.name}" for m in MEASURES
    )


def measures_over_rollup() -> str:
    """Every measure over a set of rows of one rollup (several days of an agent, say)."""
    return ",\n       ".join(
        f"COALESCE(sum({m.name}), 0) AS {m.name}"
        if m.combine == "sum"
        else f"{m.combine}({m.name}) AS {m.name}"
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


def _upsert(rollup: _Rollup, source: str) -> str:
    keys = ", ".join(rollup.keys)
    sources = ", ".join(rollup.keys.values())
    return f"""
INSERT INTO {rollup.table} AS r ({keys}, {TOTALS})
SELECT {sources}, {measures_from_ledger(keep_unknown=rollup.keep_unknown)}
FROM {source}
GROUP BY {sources}
ORDER BY {sources}
ON CONFLICT ({keys}) DO UPDATE SET {_ADD}
"""


def upserts(source: str) -> dict[str, str]:
    """The six upserts, each adding the entries of ``source`` (a relation with the
    ledger's columns, optionally with a WHERE clause) to its rollup."""
    return {name: _upsert(rollup, source) for name, rollup in _ROLLUPS.items()}


def upserts_over(source: str) -> str:
    """The six upserts as common table expressions over ``source``, for the statement that
    appends the entries (one round trip, one plan prepared once per connection).

    PostgreSQL runs the data-modifying parts of a statement one after another, always in
    the same order for the same statement, so every writer visits the tables in one order.
    """
    return ",\n".join(f"rollup_{name} AS ({sql})" for name, sql in upserts(source).items())


# Read side ---------------------------------------------------------------------------------

SELECT_JOB = f"SELECT job_id, {TOTALS} FROM rollup_jobs WHERE job_id = $1"

# A line's unit prices are those of its rate: the long-context entry it names, else the
# model's base prices; per_request is always the model's.
SELECT_JOB_LINES = f"""
SELECT l.agent, l.model, l.provider, l.catalog_version, l.long_context_from, p.tier,
       p.name AS model_name,
       COALESCE(lc.input, p.input) AS input, COALESCE(lc.output, p.output) AS output,
       COALESCE(lc.cache_read, p.cache_read) AS cache_read,
       COALESCE(lc.cache_write, p.cache_write) AS cache_write,
       COALESCE(lc.reasoning, p.reasoning) AS reasoning, p.per_request,
       {", ".join(f"l.{name}" for name in MEASURE_NAMES)}
FROM rollup_job_lines AS l
LEFT JOIN catalog_prices AS p ON p.version_id = l.catalog_version AND p.model_id = l.model
LEFT JOIN catalog_long_context AS lc
       ON lc.version_id = l.catalog_version AND lc.model_id = l.model
      AND lc.min_input_tokens = l.long_context_from
WHERE l.job_id = $1 AND l.events <> 0
ORDER BY l.agent, l.model, l.provider, l.catalog_version NULLS LAST,
         l.long_context_from NULLS FIRST
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
  -- the range but none inside it must not match, so look for an entry in the range.
  AND (($2::timestamptz IS NULL AND $3::timestamptz IS NULL) OR EXISTS (
        SELECT 1 FROM ledger_entries AS e
        WHERE e.job_id = j.job_id
          AND ($2::timestamptz IS NULL OR e.occurred_at >= $2)
          AND ($3::timestamptz IS NULL OR e.occurred_at < $3)))
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

SELECT_AGENT_DAYS = f"""
SELECT day, {TOTALS}
FROM rollup_agent_days
WHERE agent = $1
  AND ($2::date IS NULL OR day >= $2)
  AND ($3::date IS NULL OR day < $3)
ORDER BY day
"""

# Exact series for ranges that do not fall on UTC midnights: straight from the ledger.
SELECT_AGENT_DAYS_FROM_LEDGER = f"""
SELECT billing_day AS day, {measures_from_ledger()}
FROM ledger_entries
WHERE agent = $1
  AND ($2::timestamptz IS NULL OR occurred_at >= $2)
  AND ($3::timestamptz IS NULL OR occurred_at < $3)
GROUP BY billing_day
ORDER BY billing_day
"""

AGENT_HAS_USAGE = "SELECT 1 FROM rollup_agent_days WHERE agent = $1 LIMIT 1"

# Customers' totals in one UTC month ($2, its first day), from the customer × month rollup.
SELECT_CUSTOMER_MONTHS = f"""
SELECT customer_id, month, {TOTALS}
FROM rollup_customer_months
WHERE customer_id = ANY($1::text[]) AND month = $2
"""
